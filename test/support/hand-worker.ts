// A worker speaking the protocol by hand, written from docs/worker-protocol.md alone: the base of the tests' scripted,
// flooding and conformance workers. It reads the master's messages in order and sends whatever its owner says.
import { WebSocket } from "ws";
import { PROTOCOL_VERSION, WORKER_PATH } from "../../src/worker-protocol/index.js";
import { TEST_TOKEN } from "./cluster.js";

export type Message = { type: string; [key: string]: unknown };

export interface HelloOptions {
  token?: unknown;
  protocolVersion?: number;
  maxConcurrency?: number;
  name?: string;
  model?: string;
  /** The model's capabilities (none announced when absent, as an old worker). */
  capabilities?: string[];
  /** Hello `features` (none when absent, as an old worker). */
  features?: string[];
}

export class HandWorker {
  readonly received: Message[] = [];
  private cursor = 0;
  private waiters: Array<() => void> = [];
  private listeners: Array<(message: Message) => void> = [];
  private heartbeat: NodeJS.Timeout | undefined;
  readonly closed: Promise<{ code: number; reason: string }>;
  readonly model = `hand-model-${Math.random().toString(36).slice(2, 8)}`;
  readonly name = `hand-${Math.random().toString(36).slice(2, 8)}`;

  private constructor(readonly socket: WebSocket) {
    socket.on("message", (data) => {
      const message = JSON.parse(data.toString()) as Message;
      this.received.push(message);
      for (const listener of this.listeners) listener(message);
      for (const waiter of this.waiters.splice(0)) waiter();
    });
    this.closed = new Promise((resolve) =>
      socket.on("close", (code, reason) => {
        clearInterval(this.heartbeat);
        resolve({ code, reason: reason.toString() });
      }),
    );
  }

  /** Opens the WebSocket (`answerPings: false`: never answer pings, as a frozen process would not). */
  static async connect(workerUrl: string, options: { answerPings?: boolean } = {}): Promise<HandWorker> {
    const socket = new WebSocket(`${workerUrl}${WORKER_PATH}`, { autoPong: options.answerPings ?? true });
    await new Promise<void>((resolve, reject) => {
      socket.once("open", () => resolve());
      socket.once("error", reject);
    });
    socket.on("error", () => {});
    return new HandWorker(socket);
  }

  /** Connects, says Hello and waits for Welcome; heartbeats then go out as Welcome asks (unless `heartbeats` is false). */
  static async join(
    workerUrl: string,
    options: HelloOptions & { answerPings?: boolean; heartbeats?: boolean } = {},
  ): Promise<{ worker: HandWorker; welcome: Message }> {
    const worker = await HandWorker.connect(workerUrl, options);
    worker.send(worker.hello(options));
    const welcome = await Promise.race([
      worker.take("Welcome"),
      worker.closed.then((c) => Promise.reject(new Error(`closed before Welcome: ${c.code} ${c.reason}`))),
    ]);
    if (options.heartbeats !== false) worker.startHeartbeats(Number(welcome.heartbeatIntervalMs));
    return { worker, welcome };
  }

  hello(options: HelloOptions = {}): Message {
    return {
      type: "Hello",
      protocolVersion: options.protocolVersion ?? PROTOCOL_VERSION,
      token: options.token === undefined ? TEST_TOKEN : options.token,
      worker: {
        name: options.name ?? this.name,
        engine: "hand",
        maxConcurrency: options.maxConcurrency ?? 2,
        device: { kind: "cpu", name: "test", memoryBytes: 0 },
      },
      models: [
        {
          id: options.model ?? this.model,
          contextLength: 32_768,
          format: "think",
          ...(options.capabilities !== undefined && { capabilities: options.capabilities }),
        },
      ],
      ...(options.features !== undefined && { features: options.features }),
    };
  }

  send(message: object): void {
    if (this.socket.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  startHeartbeats(intervalMs: number): void {
    clearInterval(this.heartbeat);
    this.heartbeat = setInterval(() => this.send({ type: "Heartbeat", at: Date.now() }), intervalMs);
  }

  /** Calls `listener` with every message from now on (for workers that react rather than wait). */
  onMessage(listener: (message: Message) => void): void {
    this.listeners.push(listener);
  }

  /** The next message of `type` after those already taken (others are skipped). */
  async take(type: string, timeoutMs = 10_000): Promise<Message> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.cursor < this.received.length) {
        const message = this.received[this.cursor++] as Message;
        if (message.type === type) return message;
      }
      if (Date.now() > deadline) throw new Error(`no ${type} within ${timeoutMs} ms; got ${JSON.stringify(this.received.map((m) => m.type))}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 50);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** The code of the first ProtocolError the master sent, if any. */
  get protocolError(): unknown {
    return this.received.find((m) => m.type === "ProtocolError")?.code;
  }

  /** Closes with a handshake and waits for the close. */
  async close(): Promise<void> {
    if (this.socket.readyState !== WebSocket.CLOSED) this.socket.close(1000, "done");
    await this.closed;
  }

  terminate(): void {
    this.socket.terminate();
  }
}
