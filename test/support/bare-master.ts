// A bare master for worker-side tests: a WebSocket server that welcomes one worker, assigns it one task and records
// everything the worker sends (no coordinator, so a test sees the worker's own frames and can stall its socket).
import type { AddressInfo, Socket } from "node:net";
import { type RawData, type WebSocket, WebSocketServer } from "ws";
import {
  decodeWorkerMessage,
  encode,
  PROTOCOL_VERSION,
  type TaskAssigned,
  type TokenChunk,
  type WorkerMessage,
} from "../../src/worker-protocol/index.js";

const DEFAULT_TASK: Omit<TaskAssigned, "type"> = { taskId: "t1", model: "m", messages: [{ role: "user", content: "hi" }], params: {} };

/** Starts the master; the worker it welcomes gets `task` right after its Welcome. */
export async function startBareMaster(task: Omit<TaskAssigned, "type"> = DEFAULT_TASK) {
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise<void>((resolve) => server.once("listening", () => resolve()));
  const received: WorkerMessage[] = [];
  let socket: WebSocket | undefined;
  server.on("connection", (ws) => {
    socket = ws;
    ws.on("message", (data: RawData) => {
      const decoded = decodeWorkerMessage(data.toString());
      if (!decoded.ok) throw new Error(decoded.error);
      received.push(decoded.message);
      if (decoded.message.type !== "Hello") return;
      ws.send(encode({ type: "Welcome", protocolVersion: PROTOCOL_VERSION, workerId: "w1", heartbeatIntervalMs: 60_000 }));
      ws.send(encode({ type: "TaskAssigned", ...task }));
    });
  });
  const transport = () => (socket as unknown as { _socket: Socket })._socket;
  return {
    url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`,
    received,
    chunks: () => received.filter((m): m is TokenChunk => m.type === "TokenChunk"),
    finished: () => received.some((m) => m.type === "TaskFinished"),
    /** Stops reading the worker's connection: its kernel buffers fill, then its socket's own buffer. */
    pauseReading: () => transport().pause(),
    resumeReading: () => transport().resume(),
    close: () =>
      new Promise<void>((resolve) => {
        for (const client of server.clients) client.terminate();
        server.close(() => resolve());
      }),
  };
}
