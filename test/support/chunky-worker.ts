// A worker written against docs/worker-protocol.md alone, that answers every task with 64 KiB chunks as fast as its
// window allows (or, told to, ignoring the window). For flow-control tests.
import { WebSocket } from "ws";
import { PROTOCOL_VERSION, WORKER_PATH } from "../../src/worker-protocol/index.js";
import { TEST_TOKEN } from "./cluster.js";

export const CHUNKY_MODEL = "chunky";
const CHUNK = "x".repeat(64 * 1024);

export interface ChunkyWorker {
  /** Tasks that were told to stop. */
  cancelled: Set<string>;
  /** Tasks waiting for TaskCredit because their window is used up. */
  waiting: Set<string>;
  closed: Promise<{ code: number; reason: string }>;
  /** Every ProtocolError the master sent. */
  errors: string[];
  close(): Promise<void>;
}

export async function startChunkyWorker(workerUrl: string, options: { ignoreWindow?: boolean } = {}): Promise<ChunkyWorker> {
  const socket = new WebSocket(`${workerUrl}${WORKER_PATH}`);
  const cancelled = new Set<string>();
  const waiting = new Set<string>();
  const errors: string[] = [];
  /** Per task: bytes it may still send, and the next seq. */
  const tasks = new Map<string, { credit: number; seq: number }>();
  let window = Number.POSITIVE_INFINITY;
  let heartbeat: NodeJS.Timeout | undefined;
  let welcomed!: () => void;
  const welcome = new Promise<void>((resolve) => (welcomed = resolve));
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    socket.on("close", (code, reason) => {
      clearInterval(heartbeat);
      resolve({ code, reason: reason.toString() });
    }),
  );
  const send = (message: object) => {
    if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  };
  const pump = (taskId: string) => {
    const task = tasks.get(taskId);
    if (!task || cancelled.has(taskId)) return;
    if (task.credit <= 0 && !options.ignoreWindow) {
      waiting.add(taskId);
      return;
    }
    waiting.delete(taskId);
    send({ type: "TokenChunk", taskId, seq: task.seq++, text: CHUNK, tokens: 1 });
    task.credit -= CHUNK.length;
    setImmediate(() => pump(taskId));
  };
  socket.on("message", (data) => {
    const message = JSON.parse(data.toString()) as { type: string; [key: string]: unknown };
    switch (message.type) {
      case "Welcome":
        window = typeof message.taskWindowBytes === "number" ? message.taskWindowBytes : window;
        heartbeat = setInterval(() => send({ type: "Heartbeat", at: Date.now() }), Number(message.heartbeatIntervalMs));
        welcomed();
        return;
      case "TaskAssigned": {
        const taskId = String(message.taskId);
        tasks.set(taskId, { credit: window, seq: 0 });
        send({ type: "TaskProgress", taskId, promptTokensDone: 0 });
        pump(taskId);
        return;
      }
      case "TaskCredit": {
        const task = tasks.get(String(message.taskId));
        if (!task) return;
        task.credit += Number(message.bytes);
        if (waiting.has(String(message.taskId))) pump(String(message.taskId));
        return;
      }
      case "TaskCancelled": {
        const taskId = String(message.taskId);
        cancelled.add(taskId);
        tasks.delete(taskId);
        waiting.delete(taskId);
        send({ type: "TaskCancelAck", taskId });
        return;
      }
      case "ProtocolError":
        errors.push(String(message.code));
        return;
    }
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("open", () => resolve());
    socket.once("error", reject);
  });
  socket.on("error", () => {});
  send({
    type: "Hello",
    protocolVersion: PROTOCOL_VERSION,
    token: TEST_TOKEN,
    worker: { name: `chunky-${Math.random().toString(36).slice(2, 8)}`, device: { kind: "cpu", name: "test", memoryBytes: 0 }, maxConcurrency: 128, engine: "chunky" },
    models: [{ id: CHUNKY_MODEL, contextLength: 1_000_000 }],
  });
  await Promise.race([welcome, closed.then((c) => Promise.reject(new Error(`closed before Welcome: ${c.code} ${c.reason}`)))]);
  return {
    cancelled,
    waiting,
    closed,
    errors,
    async close() {
      if (socket.readyState === WebSocket.CLOSED) return;
      socket.close(1000, "done");
      await closed;
    },
  };
}
