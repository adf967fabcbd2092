// A coordinator head written by hand, for worker-side tests of what several heads say to one worker: a WebSocket
// server that welcomes the worker (taking up the features it is told to), sends whatever the test says, and keeps
// every message the worker sends, each checked against the protocol's schemas.
import type { AddressInfo } from "node:net";
import { type RawData, type WebSocket, WebSocketServer } from "ws";
import {
  decodeWorkerMessage,
  encode,
  type Hello,
  MasterMessage,
  PROTOCOL_VERSION,
  WORKER_PATH,
  type WorkerMessage,
} from "../../src/worker-protocol/index.js";

export interface FakeHeadOptions {
  /** The features this head takes up, of those the worker's Hello offers. */
  takes: readonly string[];
  heartbeatIntervalMs?: number;
}

export class FakeHead {
  /** Every message the worker sent, in order (all valid: an invalid one fails the test at once). */
  readonly received: WorkerMessage[] = [];
  private socket: WebSocket | undefined;
  private waiters: Array<() => void> = [];
  /** Heartbeats to the worker, which gives up on a head silent for three of its intervals. */
  private heartbeat: NodeJS.Timeout | undefined;

  private constructor(
    private readonly server: WebSocketServer,
    private readonly options: FakeHeadOptions,
  ) {
    server.on("connection", (socket) => {
      this.socket = socket;
      socket.on("message", (data: RawData) => this.onMessage(data.toString()));
      socket.on("close", () => clearInterval(this.heartbeat));
    });
  }

  static async start(options: FakeHeadOptions): Promise<FakeHead> {
    const server = new WebSocketServer({ host: "127.0.0.1", port: 0, path: WORKER_PATH });
    await new Promise<void>((resolve) => server.once("listening", () => resolve()));
    return new FakeHead(server, options);
  }

  get url(): string {
    return `ws://127.0.0.1:${(this.server.address() as AddressInfo).port}${WORKER_PATH}`;
  }

  /** Sends a message, checked against the master's schemas first. */
  send(message: MasterMessage): void {
    if (!this.socket) throw new Error("no worker connected");
    this.socket.send(encode(MasterMessage.parse(message)));
  }

  /** The messages of `type` the worker sent so far. */
  all<T extends WorkerMessage["type"]>(type: T): Array<Extract<WorkerMessage, { type: T }>> {
    return this.received.filter((m): m is Extract<WorkerMessage, { type: T }> => m.type === type);
  }

  /** Resolves with the first message of `type` after the first `after` received that `matches`; rejects after `timeoutMs`. */
  next<T extends WorkerMessage["type"]>(
    type: T,
    matches: (message: Extract<WorkerMessage, { type: T }>) => boolean = () => true,
    after = 0,
    timeoutMs = 10_000,
  ): Promise<Extract<WorkerMessage, { type: T }>> {
    const find = () => this.received.slice(after).find((m): m is Extract<WorkerMessage, { type: T }> => m.type === type && matches(m as Extract<WorkerMessage, { type: T }>));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== check);
        reject(new Error(`timed out waiting for ${type}`));
      }, timeoutMs);
      const check = () => {
        const found = find();
        if (!found) return;
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== check);
        resolve(found);
      };
      this.waiters.push(check);
      check();
    });
  }

  close(): Promise<void> {
    clearInterval(this.heartbeat);
    return new Promise((resolve) => {
      for (const client of this.server.clients) client.terminate();
      this.server.close(() => resolve());
    });
  }

  private onMessage(data: string): void {
    const decoded = decodeWorkerMessage(data);
    if (!decoded.ok) throw new Error(`the worker sent an invalid message: ${decoded.error}`);
    this.received.push(decoded.message);
    if (decoded.message.type === "Hello") this.welcome(decoded.message);
    for (const waiter of [...this.waiters]) waiter();
  }

  private welcome(hello: Hello): void {
    const features = (hello.features ?? []).filter((feature) => this.options.takes.includes(feature));
    const heartbeatIntervalMs = this.options.heartbeatIntervalMs ?? 60_000;
    this.send({ type: "Welcome", protocolVersion: PROTOCOL_VERSION, workerId: `w-${Math.random().toString(36).slice(2, 8)}`, heartbeatIntervalMs, features });
    clearInterval(this.heartbeat);
    this.heartbeat = setInterval(() => this.send({ type: "Heartbeat", at: Date.now() }), heartbeatIntervalMs);
  }
}
