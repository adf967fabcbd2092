// A hand-written worker that answers every task with 64 KiB chunks as fast as its window allows (or, told to,
// ignoring the window). For flow-control tests.
import { HandWorker } from "./hand-worker.js";

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
  const { worker: hand, welcome } = await HandWorker.join(workerUrl, { model: CHUNKY_MODEL, maxConcurrency: 128 });
  const window = typeof welcome.taskWindowBytes === "number" ? welcome.taskWindowBytes : Number.POSITIVE_INFINITY;
  const cancelled = new Set<string>();
  const waiting = new Set<string>();
  const errors: string[] = [];
  /** Per task: bytes it may still send, and the next seq. */
  const tasks = new Map<string, { credit: number; seq: number }>();
  const pump = (taskId: string) => {
    const task = tasks.get(taskId);
    if (!task || cancelled.has(taskId)) return;
    if (task.credit <= 0 && !options.ignoreWindow) {
      waiting.add(taskId);
      return;
    }
    waiting.delete(taskId);
    hand.send({ type: "TokenChunk", taskId, seq: task.seq++, text: CHUNK, tokens: 1 });
    task.credit -= CHUNK.length;
    setImmediate(() => pump(taskId));
  };
  hand.onMessage((message) => {
    const taskId = String(message.taskId);
    switch (message.type) {
      case "TaskAssigned":
        tasks.set(taskId, { credit: window, seq: 0 });
        hand.send({ type: "TaskProgress", taskId, promptTokensDone: 0 });
        pump(taskId);
        return;
      case "TaskCredit": {
        const task = tasks.get(taskId);
        if (!task) return;
        task.credit += Number(message.bytes);
        if (waiting.has(taskId)) pump(taskId);
        return;
      }
      case "TaskCancelled":
        cancelled.add(taskId);
        tasks.delete(taskId);
        waiting.delete(taskId);
        hand.send({ type: "TaskCancelAck", taskId });
        return;
      case "ProtocolError":
        errors.push(String(message.code));
        return;
    }
  });
  return { cancelled, waiting, closed: hand.closed, errors, close: () => hand.close() };
}
