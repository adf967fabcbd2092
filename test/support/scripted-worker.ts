// A hand-written worker whose answer to each task the test scripts: never answer (a stuck worker that still
// heartbeats), send a few chunks and go silent, or answer properly.
import { HandWorker } from "./hand-worker.js";

/** What the worker does with a task: nothing at all, `chunks` chunks then silence, or a whole reply. */
export type TaskBehaviour = { kind: "silent" } | { kind: "stall-after"; chunks: number } | { kind: "answer"; text: string };

export interface ScriptedWorker {
  name: string;
  assigned: string[];
  cancelled: string[];
  /** What to do with the next tasks; change it at any time. */
  behaviour: TaskBehaviour;
  closed: Promise<{ code: number; reason: string }>;
  close(): Promise<void>;
}

export interface ScriptedWorkerOptions {
  model?: string;
  maxConcurrency?: number;
  name?: string;
  behaviour?: TaskBehaviour;
  /** false: never answer pings, as a frozen process or a dead network path would not. */
  answerPings?: boolean;
}

export async function startScriptedWorker(workerUrl: string, options: ScriptedWorkerOptions = {}): Promise<ScriptedWorker> {
  const { worker: hand } = await HandWorker.join(workerUrl, { model: "simulator", maxConcurrency: 4096, ...options });
  const worker: ScriptedWorker = {
    name: options.name ?? hand.name,
    assigned: [],
    cancelled: [],
    behaviour: options.behaviour ?? { kind: "silent" },
    closed: hand.closed,
    close: () => hand.close(),
  };
  const perform = (taskId: string, behaviour: TaskBehaviour) => {
    if (behaviour.kind === "silent") return;
    if (behaviour.kind === "stall-after") {
      for (let seq = 0; seq < behaviour.chunks; seq++) hand.send({ type: "TokenChunk", taskId, seq, text: `piece ${seq} ` });
      return;
    }
    hand.send({ type: "TokenChunk", taskId, seq: 0, text: behaviour.text });
    hand.send({ type: "TaskFinished", taskId, finishReason: "stop", usage: { promptTokens: 1, completionTokens: 1 } });
  };
  hand.onMessage((message) => {
    const taskId = String(message.taskId);
    if (message.type === "TaskAssigned") {
      worker.assigned.push(taskId);
      perform(taskId, worker.behaviour);
    } else if (message.type === "TaskCancelled") {
      worker.cancelled.push(taskId);
      hand.send({ type: "TaskCancelAck", taskId });
    }
  });
  return worker;
}
