// One worker's WebSocket on the master side: handshake, validation, heartbeats, and its end.
import { createHash, timingSafeEqual } from "node:crypto";
import type { WebSocket } from "ws";
import type { Logger } from "../log.js";
import {
  batchFramesThisTurn,
  CloseCode,
  decodeWorkerMessage,
  encode,
  type MasterMessage,
  FEATURES,
  PROTOCOL_VERSION,
  type WorkerMessage,
} from "../worker-protocol/index.js";
import { ProtocolViolation } from "./errors.js";
import type { Master } from "./master.js";
import type { WorkerEntry, WorkerLink } from "./registry.js";

export interface WorkerConnectionOptions {
  token: string;
  handshakeTimeoutMs: number;
  heartbeatIntervalMs: number;
  /** A worker silent for this long (no message, no heartbeat) is declared dead. */
  heartbeatDeadlineMs: number;
  /**
   * A Hello with the name of a registered worker: that worker's connection is pinged, and only if it does not
   * answer within this time is it replaced. A live worker's name cannot be taken over.
   */
  nameProbeMs: number;
  log: Logger;
  /** The peer's address, from the upgrade request. */
  remoteAddress: string;
  /** Told of each wrong token with its address: too many from one address and it is turned away for a while. */
  admission: { tokenFailed(address: string): void };
}

/** Compares secrets in time that does not depend on where they differ (or on their lengths). */
export function tokensMatch(given: string, expected: string): boolean {
  const a = createHash("sha256").update(given).digest();
  const b = createHash("sha256").update(expected).digest();
  return timingSafeEqual(a, b);
}

/** Serves one worker connection until it closes; everything it starts is stopped on close. */
export function serveWorkerConnection(socket: WebSocket, master: Master, options: WorkerConnectionOptions): void {
  const { log } = options;
  let worker: WorkerEntry | undefined;
  /** While a Hello waits for the probe of the name's current holder: nothing else may come meanwhile. */
  let helloPending = false;
  /** The name a Hello on this connection gave, for log lines before it is registered. */
  let helloName: string | undefined;
  let lastSeen = Date.now();
  let closing = false;
  let forceTimer: NodeJS.Timeout | undefined;

  const link: WorkerLink = {
    send(message: MasterMessage) {
      if (socket.readyState !== socket.OPEN) return;
      batchFramesThisTurn(socket);
      socket.send(encode(message));
    },
    close(code: number, reason: string) {
      if (closing) return;
      closing = true;
      socket.close(code, reason);
      // A peer that never completes the closing handshake must not keep the socket (or the process) alive.
      forceTimer = setTimeout(() => socket.terminate(), 2_000);
    },
    isAlive(timeoutMs: number) {
      if (closing || socket.readyState !== socket.OPEN) return Promise.resolve(false);
      return new Promise<boolean>((resolve) => {
        const done = (alive: boolean) => {
          clearTimeout(timer);
          socket.off("pong", onPong);
          socket.off("close", onClose);
          resolve(alive);
        };
        const onPong = () => done(true);
        const onClose = () => done(false);
        const timer = setTimeout(() => done(false), timeoutMs);
        socket.on("pong", onPong);
        socket.on("close", onClose);
        socket.ping();
      });
    },
  };

  const refuse = (code: number, errorCode: string, message: string) => {
    log.warn({ worker: worker?.id, workerName: worker?.name ?? helloName, code: errorCode }, `worker protocol error: ${message}`);
    master.observers.protocolError(errorCode);
    link.send({ type: "ProtocolError", code: errorCode, message });
    link.close(code, message.slice(0, 120));
  };

  const handshakeTimer = setTimeout(() => {
    if (!worker) refuse(CloseCode.timeout, "handshake_timeout", "no Hello received in time");
  }, options.handshakeTimeoutMs);

  const heartbeatTimer = setInterval(() => {
    if (!worker) return;
    if (Date.now() - lastSeen > options.heartbeatDeadlineMs) {
      log.warn({ worker: worker.id, workerName: worker.name }, "worker missed its heartbeat deadline");
      master.workerLeft(worker);
      socket.terminate();
      return;
    }
    link.send({ type: "Heartbeat", at: Date.now() });
  }, options.heartbeatIntervalMs);

  const onHello = async (message: WorkerMessage) => {
    if (message.type !== "Hello") {
      refuse(CloseCode.protocolError, "hello_expected", `expected Hello, got ${message.type}`);
      return;
    }
    if (message.protocolVersion !== PROTOCOL_VERSION) {
      refuse(
        CloseCode.unsupportedVersion,
        "unsupported_version",
        `protocol version ${message.protocolVersion} is not supported (this master speaks ${PROTOCOL_VERSION})`,
      );
      return;
    }
    if (!tokensMatch(message.token, options.token)) {
      options.admission.tokenFailed(options.remoteAddress);
      refuse(CloseCode.unauthorized, "unauthorized", "wrong or missing worker token");
      return;
    }
    if (message.models.length === 0 && !(message.library !== undefined && message.features?.includes(FEATURES.models))) {
      refuse(CloseCode.protocolError, "no_models", "Hello must list the models served, or offer a library (even empty) with the models feature");
      return;
    }
    // The Hello came in time; probing the name's holder below is the master's own wait.
    clearTimeout(handshakeTimer);
    helloName = message.worker.name;
    const holder = master.registry.findByName(message.worker.name);
    if (holder) {
      helloPending = true;
      const alive = await holder.link.isAlive(options.nameProbeMs);
      helloPending = false;
      if (closing || socket.readyState !== socket.OPEN) return;
      // Alive, or taken meanwhile by another newcomer: the name is in use. (A holder that left meanwhile frees it.)
      const current = master.registry.findByName(message.worker.name);
      if (alive || (current !== undefined && current !== holder)) {
        refuse(CloseCode.nameInUse, "name_in_use", `a live worker is already connected as '${message.worker.name}'`);
        return;
      }
    }
    // The name probe may have taken a while: the heartbeat deadline counts from the registration.
    lastSeen = Date.now();
    worker = master.registerWorker(message, link);
  };

  socket.on("message", (data, isBinary) => {
    if (closing) return;
    lastSeen = Date.now();
    if (isBinary) {
      refuse(CloseCode.protocolError, "binary_frame", "frames must be JSON text");
      return;
    }
    const text = data.toString();
    const decoded = decodeWorkerMessage(text);
    if (!decoded.ok) {
      if (!worker && isHelloWithoutToken(text)) {
        options.admission.tokenFailed(options.remoteAddress);
        refuse(CloseCode.unauthorized, "unauthorized", "wrong or missing worker token");
      } else refuse(CloseCode.protocolError, "invalid_message", decoded.error);
      return;
    }
    if (helloPending) {
      refuse(CloseCode.protocolError, "welcome_expected", `got ${decoded.message.type} before Welcome`);
      return;
    }
    try {
      if (!worker) void onHello(decoded.message).catch(onHandlerError);
      else master.workerMessage(worker, decoded.message);
    } catch (error) {
      onHandlerError(error);
    }
  });

  function onHandlerError(error: unknown): void {
    if (worker) master.workerLeft(worker);
    if (error instanceof ProtocolViolation) {
      refuse(CloseCode.protocolError, error.code, error.message);
    } else {
      // A bug of ours must cost one worker its connection, never the coordinator its process.
      log.error({ worker: worker?.id, workerName: worker?.name, err: error }, "internal error while handling a worker message");
      refuse(CloseCode.internalError, "internal_error", "the master failed to handle a message");
    }
  }

  socket.on("error", (error) => {
    // ws reports oversized frames and invalid UTF-8 here, then closes the socket itself.
    log.warn({ worker: worker?.id, workerName: worker?.name ?? helloName, err: error.message }, "worker socket error");
  });

  socket.on("close", () => {
    clearTimeout(handshakeTimer);
    clearInterval(heartbeatTimer);
    clearTimeout(forceTimer);
    if (worker) master.workerLeft(worker);
  });
}

/** A Hello frame whose `token` is missing or not a string: an authentication failure (4001), not a malformed frame. */
function isHelloWithoutToken(text: string): boolean {
  try {
    const json: unknown = JSON.parse(text);
    if (typeof json !== "object" || json === null) return false;
    const { type, token } = json as { type?: unknown; token?: unknown };
    return type === "Hello" && typeof token !== "string";
  } catch {
    return false; // not JSON: an invalid message
  }
}
