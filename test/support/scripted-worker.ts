// A worker written against docs/worker-protocol.md whose answer to each task the test scripts: never answer (a stuck
// worker that still heartbeats), send a few chunks and go silent, or answer properly.
import { WebSocket } from "ws";
import { PROTOCOL_VERSION, WORKER_PATH } from "../../src/worker-protocol/index.js";
import { TEST_TOKEN } from "./cluster.js";

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
  token?: string;
  /** false: never answer pings, as a frozen process or a dead network path would not. */
  answerPings?: boolean;
}

export async function startScriptedWorker(workerUrl: string, options: ScriptedWorkerOptions = {}): Promise<ScriptedWorker> {
  const socket = new WebSocket(`${workerUrl}${WORKER_PATH}`, { autoPong: options.answerPings ?? true });
  let heartbeat: NodeJS.Timeout | undefined;
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    socket.on("close", (code, reason) => {
      clearInterval(heartbeat);
      resolve({ code, reason: reason.toString() });
    }),
  );
  const send = (message: object) => {
    if (socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  };
  const worker: ScriptedWorker = {
    name: options.name ?? `scripted-${Math.random().toString(36).slice(2, 8)}`,
    assigned: [],
    cancelled: [],
    behaviour: options.behaviour ?? { kind: "silent" },
    closed,
    async close() {
      if (socket.readyState === WebSocket.CLOSED) return;
      socket.close(1000, "done");
      await closed;
    },
  };
  let welcomed!: () => void;
  const welcome = new Promise<void>((resolve) => (welcomed = resolve));
  socket.on("message", (data) => {
    const message = JSON.parse(data.toString()) as { type: string; taskId?: string; heartbeatIntervalMs?: number };
    if (message.type === "Welcome") {
      heartbeat = setInterval(() => send({ type: "Heartbeat", at: Date.now() }), message.heartbeatIntervalMs ?? 1000);
      welcomed();
    } else if (message.type === "TaskAssigned" && message.taskId) {
      worker.assigned.push(message.taskId);
      perform(message.taskId, worker.behaviour);
    } else if (message.type === "TaskCancelled" && message.taskId) {
      worker.cancelled.push(message.taskId);
      send({ type: "TaskCancelAck", taskId: message.taskId });
    }
  });
  const perform = (taskId: string, behaviour: TaskBehaviour) => {
    if (behaviour.kind === "silent") return;
    if (behaviour.kind === "stall-after") {
      for (let seq = 0; seq < behaviour.chunks; seq++) send({ type: "TokenChunk", taskId, seq, text: `piece ${seq} ` });
      return;
    }
    send({ type: "TokenChunk", taskId, seq: 0, text: behaviour.text });
    send({ type: "TaskFinished", taskId, finishReason: "stop", usage: { promptTokens: 1, completionTokens: 1 } });
  };
  await new Promise<void>((resolve, reject) => {
    socket.once("open", () => resolve());
    socket.once("error", reject);
  });
  socket.on("error", () => {});
  send({
    type: "Hello",
    protocolVersion: PROTOCOL_VERSION,
    token: options.token ?? TEST_TOKEN,
    worker: { name: worker.name, device: { kind: "cpu", name: "test", memoryBytes: 0 }, maxConcurrency: options.maxConcurrency ?? 4096, engine: "scripted" },
    models: [{ id: options.model ?? "simulator", contextLength: 32_768, format: "think" }],
  });
  await Promise.race([welcome, closed.then((c) => Promise.reject(new Error(`closed before Welcome: ${c.code} ${c.reason}`)))]);
  return worker;
}
