// A bench-only worker written against the worker protocol (docs/worker-protocol.md) instead of WorkerRuntime: it sends
// each task's output as TokenChunks of exactly `pieceBytes`, as fast as its socket and the task's window (TaskCredit)
// allow. Before flow control, WorkerRuntime merged a task's pieces into one frame while its socket was behind, with no
// bound on the frame's size: fed 64 KiB pieces at full speed it built frames of hundreds of MB (past the master's
// 16 MiB limit, which closed it with 1009); this worker keeps the bench's before and after on the same footing.
import WebSocket from "ws";
import { workerUrl } from "../src/worker/runtime.js";
import { chunkCost, decodeMasterMessage, encode, PROTOCOL_VERSION, type TaskAssigned, type WorkerMessage } from "../src/worker-protocol/index.js";
import { bulkDescription, type BulkOptions } from "./bulk-engine.js";

/** Bytes the socket may hold unsent before the worker waits for its send callbacks: enough to keep it busy. */
const HIGH_WATER_BYTES = 1024 * 1024;

interface BulkTask {
  id: string;
  seq: number;
  remaining: number;
  /** Bytes sent and not yet granted back by TaskCredit. */
  outstanding: number;
}

export interface BulkWorkerOptions extends BulkOptions {
  join: string;
  token: string;
  name: string;
  maxConcurrency: number;
}

export class BulkWorker {
  /** Running tasks in the order they get their next piece (a task that was served moves to the end). */
  private readonly tasks = new Map<string, BulkTask>();
  private readonly piece: string;
  /** Flow control: bytes a task may have outstanding (Welcome.taskWindowBytes); none announced, no limit. */
  private window = Number.POSITIVE_INFINITY;
  private heartbeat: NodeJS.Timeout | undefined;
  private pumpScheduled = false;

  private constructor(
    private readonly socket: WebSocket,
    private readonly options: BulkWorkerOptions,
  ) {
    this.piece = "x".repeat(options.pieceBytes);
  }

  /** Connects, says Hello and resolves once the master has answered Welcome. */
  static start(options: BulkWorkerOptions): Promise<BulkWorker> {
    const worker = new BulkWorker(new WebSocket(workerUrl(options.join)), options);
    return worker.handshake();
  }

  close(): void {
    clearInterval(this.heartbeat);
    this.tasks.clear();
    this.socket.terminate();
  }

  private handshake(): Promise<BulkWorker> {
    const { socket, options } = this;
    return new Promise((resolve, reject) => {
      socket.on("open", () =>
        this.send({
          type: "Hello",
          protocolVersion: PROTOCOL_VERSION,
          token: options.token,
          worker: { name: options.name, device: bulkDescription.device, maxConcurrency: options.maxConcurrency, engine: "bulk" },
          models: bulkDescription.models,
        }),
      );
      socket.on("error", reject);
      socket.on("close", (code, reason) => {
        clearInterval(this.heartbeat);
        reject(new Error(`the master closed the bulk worker: ${code} ${reason.toString()}`));
      });
      socket.on("message", (data) => {
        const decoded = decodeMasterMessage(data.toString());
        if (!decoded.ok) throw new Error(`bulk worker: ${decoded.error}`);
        const message = decoded.message;
        switch (message.type) {
          case "Welcome":
            this.window = message.taskWindowBytes ?? Number.POSITIVE_INFINITY;
            this.heartbeat = setInterval(() => this.send({ type: "Heartbeat", at: Date.now(), running: this.tasks.size }), message.heartbeatIntervalMs);
            resolve(this);
            return;
          case "TaskAssigned":
            return this.assigned(message);
          case "TaskCancelled":
            return this.cancelled(message.taskId);
          case "TaskCredit":
            return this.credited(message.taskId, message.bytes);
          case "Heartbeat":
          case "ProtocolError":
            return;
        }
      });
    });
  }

  private assigned(task: TaskAssigned): void {
    const remaining = Math.min(this.options.pieces, task.params.maxTokens ?? Number.POSITIVE_INFINITY);
    this.tasks.set(task.taskId, { id: task.taskId, seq: 0, remaining, outstanding: 0 });
    this.schedulePump();
  }

  private credited(taskId: string, bytes: number): void {
    const task = this.tasks.get(taskId);
    if (!task) return;
    task.outstanding = Math.max(0, task.outstanding - bytes);
    this.schedulePump();
  }

  private cancelled(taskId: string): void {
    const task = this.tasks.get(taskId);
    if (!task) return;
    this.tasks.delete(taskId);
    this.send({ type: "TaskCancelAck", taskId, completionTokens: task.seq });
  }

  /** One piece for each task whose window has room, in turn, until the socket holds enough; the rest waits. */
  private readonly pump = (): void => {
    this.pumpScheduled = false;
    for (const task of [...this.tasks.values()]) {
      if (this.socket.bufferedAmount >= HIGH_WATER_BYTES) break;
      if (task.outstanding >= this.window) continue;
      this.send({ type: "TokenChunk", taskId: task.id, seq: task.seq, text: this.piece, tokens: 1 });
      task.outstanding += chunkCost(this.piece);
      task.seq += 1;
      task.remaining -= 1;
      this.tasks.delete(task.id);
      if (task.remaining > 0) this.tasks.set(task.id, task);
      else this.send({ type: "TaskFinished", taskId: task.id, finishReason: "length", usage: { promptTokens: 1, completionTokens: task.seq } });
    }
    this.schedulePump();
  };

  /**
   * Pumps in the next turn while the socket and some task's window have room; otherwise a send callback or a
   * TaskCredit calls this again.
   */
  private readonly schedulePump = (): void => {
    if (this.pumpScheduled || this.socket.bufferedAmount >= HIGH_WATER_BYTES) return;
    if (![...this.tasks.values()].some((task) => task.outstanding < this.window)) return;
    this.pumpScheduled = true;
    setImmediate(this.pump);
  };

  private send(message: WorkerMessage): void {
    if (this.socket.readyState === WebSocket.OPEN) this.socket.send(encode(message), this.schedulePump);
  }
}
