// A worker's connection to one coordinator head: its handshake, heartbeats and reconnects, the tasks that head
// assigned, and the frames that wait for its socket to drain. A worker joined to several heads has one link each
// (docs/scaling.md); its slots, engine and models are the worker's, shared by all links (runtime.ts).
import { WebSocket } from "ws";
import type { Logger } from "../log.js";
import {
  batchFramesThisTurn,
  CloseCode,
  decodeMasterMessage,
  encode,
  type Hello,
  type MasterMessage,
  type ModelCache,
  type ModelUsage,
  WORKER_PATH,
  type Welcome,
  type WorkerMessage,
} from "../worker-protocol/index.js";
import type { TaskOutput } from "./task-output.js";

/**
 * Close codes after which reconnecting cannot help: the operator must act (a wrong token, an old worker). After
 * any other close the worker comes back, with backoff: a name in use may be freed, a replaced connection was ours.
 */
const finalCloseCodes = new Set<number>([CloseCode.unauthorized, CloseCode.unsupportedVersion]);

/** Closes with a handshake, or tears the socket down if the peer does not answer within a second. */
export function closeSocket(socket: WebSocket, code: number, reason: string): Promise<void> {
  return new Promise<void>((resolve) => {
    const force = setTimeout(() => socket.terminate(), 1_000);
    socket.once("close", () => {
      clearTimeout(force);
      resolve();
    });
    socket.close(code, reason);
  });
}

export function workerUrl(join: string): string {
  const url = new URL(join);
  if (url.protocol === "http:") url.protocol = "ws:";
  if (url.protocol === "https:") url.protocol = "wss:";
  if (url.pathname === "" || url.pathname === "/") url.pathname = WORKER_PATH;
  return url.toString();
}

/** A task this head assigned, running on the worker's engine. */
export interface RunningTask {
  controller: AbortController;
  output: TaskOutput;
  model: string;
}

/** What a link asks of its worker. */
export interface HeadHost {
  /** Hello, as the worker introduces itself to every head. */
  hello(): Hello;
  /** The head welcomed this link. */
  welcomed(link: HeadLink, welcome: Welcome): void;
  /** Any other message from the head, in order. */
  message(link: HeadLink, message: Exclude<MasterMessage, Welcome>): void;
  /** The link's connection closed (it may come back): nobody is left to read its tasks. */
  disconnected(link: HeadLink): void;
  /** Generations running on the worker, over all heads (what Heartbeat `running` says). */
  running(): number;
  /** What Heartbeat `cache` says, if anything. */
  cacheStats(): ModelCache[] | undefined;
  /** What Heartbeat `models` says, for a worker that loads models on command. */
  modelUsage(): ModelUsage[] | undefined;
  log: Logger;
}

export class HeadLink {
  /** The id this head gave the worker, once welcomed. */
  workerId: string | undefined;
  readonly url: string;
  readonly tasks = new Map<string, RunningTask>();
  /** Flow control: each task's window, from Welcome (none from a head that announces none). */
  taskWindowBytes = Number.POSITIVE_INFINITY;
  /** Whether the head takes TaskProgress: those that announce a task window do (an older one would refuse it). */
  takesProgress = false;
  /** Whether the head took up the "refuse" feature: a task without a free slot is then refused, not run. */
  takesRefusals = false;
  /** Whether the head took up the "epoch" feature: it fences its model commands, and hears how models are used. */
  takesEpoch = false;
  /** A task was refused since a slot last freed: this head hears at once when one does. */
  refusedSinceFree = false;
  /** The cluster's heads as this head last listed them (the "heads" feature), as worker addresses. */
  listedHeads: ReadonlySet<string> = new Set();
  private socket: WebSocket | undefined;
  /** Tasks whose tokens wait for the socket to drain. */
  private readonly waiting = new Set<TaskOutput>();
  private heartbeat: NodeJS.Timeout | undefined;
  /** When the head was last heard from; a silent head (half-open connection) is given up on. */
  private lastHeard = Date.now();
  private retryTimer: NodeJS.Timeout | undefined;
  private attempt = 0;
  private stopped = false;
  private resolveClosed!: (info: { code: number; reason: string }) => void;
  /** Settles when the link stopped or the head refused it for good. */
  readonly closed = new Promise<{ code: number; reason: string }>((resolve) => {
    this.resolveClosed = resolve;
  });

  constructor(
    join: string,
    private readonly host: HeadHost,
    private readonly reconnect: boolean,
    /** Joined because another head listed it (not given with --join): dropped once no head lists it. */
    readonly learned = false,
  ) {
    this.url = workerUrl(join);
  }

  get isOpen(): boolean {
    return this.workerId !== undefined && this.socket?.readyState === WebSocket.OPEN;
  }

  connect(): void {
    const { log } = this.host;
    const socket = new WebSocket(this.url, { maxPayload: 64 * 1024 * 1024 });
    this.socket = socket;
    this.workerId = undefined;
    socket.on("open", () => this.send(this.host.hello()));
    socket.on("message", (data) => {
      this.lastHeard = Date.now();
      this.onMessage(data.toString());
    });
    socket.on("error", (error) => log.warn({ head: this.url, err: error.message }, "connection to the master failed"));
    socket.on("close", (code, reasonBuffer) => {
      const reason = reasonBuffer.toString();
      clearInterval(this.heartbeat);
      this.heartbeat = undefined;
      this.workerId = undefined;
      this.host.disconnected(this);
      if (this.stopped) return;
      if (finalCloseCodes.has(code) || !this.reconnect) {
        log.error({ head: this.url, code, reason }, "the master closed the connection");
        this.finish(code, reason);
        return;
      }
      const delay = Math.min(30_000, 250 * 2 ** this.attempt) * (0.5 + Math.random() / 2);
      this.attempt += 1;
      if (code === CloseCode.nameInUse) {
        log.error({ head: this.url, code, reason, retryInMs: Math.round(delay) }, "another live worker is connected under this name: give this one its own --name; retrying");
      } else log.warn({ head: this.url, code, reason, retryInMs: Math.round(delay) }, "disconnected from the master; reconnecting");
      this.retryTimer = setTimeout(() => this.connect(), delay);
    });
  }

  /** Closes the connection and stops reconnecting. */
  async stop(code: number, reason: string): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.retryTimer);
    const socket = this.socket;
    if (socket && socket.readyState !== WebSocket.CLOSED) await closeSocket(socket, code, reason);
    this.finish(code, reason);
  }

  send(message: WorkerMessage): void {
    const socket = this.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    batchFramesThisTurn(socket);
    socket.send(encode(message), this.onWritten);
  }

  sendHeartbeat(): void {
    const cache = this.host.cacheStats();
    const models = this.takesEpoch ? this.host.modelUsage() : undefined;
    this.send({ type: "Heartbeat", at: Date.now(), running: this.host.running(), ...(cache && cache.length > 0 && { cache }), ...(models && { models }) });
  }

  /** Sends a task's held tokens now when the socket keeps up, or once it has drained (merged, one frame a task). */
  flushSoon(output: TaskOutput, maxMergedBytes: number): void {
    const socket = this.socket;
    if (!socket || batchFramesThisTurn(socket) === 0 || output.frameBytes >= maxMergedBytes) output.flush();
    else this.waiting.add(output);
  }

  /** The task's held tokens need not wait for a drain any more (it is ending). */
  forget(output: TaskOutput): void {
    this.waiting.delete(output);
  }

  private onMessage(data: string): void {
    const decoded = decodeMasterMessage(data);
    if (!decoded.ok) {
      this.host.log.error({ head: this.url, error: decoded.error }, "invalid message from the master");
      return;
    }
    const message = decoded.message;
    if (message.type !== "Welcome") return this.host.message(this, message);
    this.workerId = message.workerId;
    this.taskWindowBytes = message.taskWindowBytes ?? Number.POSITIVE_INFINITY;
    this.takesProgress = message.taskWindowBytes !== undefined;
    this.attempt = 0;
    this.startHeartbeat(message.heartbeatIntervalMs);
    this.host.welcomed(this, message);
  }

  /** Heartbeats to the head; three intervals without a word from it means the connection is dead. */
  private startHeartbeat(intervalMs: number): void {
    clearInterval(this.heartbeat);
    this.lastHeard = Date.now();
    this.heartbeat = setInterval(() => {
      if (Date.now() - this.lastHeard > intervalMs * 3) {
        this.host.log.warn({ head: this.url }, "the master went silent; reconnecting");
        this.socket?.terminate();
        return;
      }
      this.sendHeartbeat();
    }, intervalMs);
  }

  private finish(code: number, reason: string): void {
    this.stopped = true;
    clearInterval(this.heartbeat);
    clearTimeout(this.retryTimer);
    this.resolveClosed({ code, reason });
  }

  /** A frame reached the kernel: once nothing is left buffered, the tokens merged meanwhile go out, one frame a task. */
  private readonly onWritten = (): void => {
    if (this.waiting.size === 0 || (this.socket?.bufferedAmount ?? 0) > 0) return;
    const waiting = [...this.waiting];
    this.waiting.clear();
    for (const outbox of waiting) outbox.flush();
  };
}
