// A WebSocket relay between a worker and its coordinator that records every protocol message, both ways.
// It lets a test see what a worker process reports (chunks, TaskCancelAck counts) without touching either side.
import type { AddressInfo } from "node:net";
import { type RawData, WebSocket, WebSocketServer } from "ws";
import {
  decodeMasterMessage,
  decodeWorkerMessage,
  type MasterMessage,
  WORKER_PATH,
  type WorkerMessage,
} from "../../src/worker-protocol/index.js";

export type Tapped =
  | { from: "worker"; at: number; message: WorkerMessage }
  | { from: "master"; at: number; message: MasterMessage };

export interface WireTap {
  /** What the worker joins instead of the coordinator (`--join`). */
  url: string;
  /** Every message relayed so far, in the order the tap saw them. */
  readonly messages: readonly Tapped[];
  /** Resolves with the first recorded message matching `predicate` (already seen or still to come). */
  waitFor(predicate: (tapped: Tapped) => boolean, what: string, timeoutMs?: number): Promise<Tapped>;
  close(): Promise<void>;
}

/** Close codes a peer may not send itself (they only describe what happened locally). */
const reservedCodes = new Set([1005, 1006, 1015]);

/** Starts a tap in front of the coordinator whose worker endpoint is `workerUrl` (ws://host:port). */
export async function startWireTap(workerUrl: string): Promise<WireTap> {
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise<void>((resolve) => server.once("listening", resolve));
  const messages: Tapped[] = [];
  const listeners = new Set<() => void>();
  const record = (tapped: Tapped) => {
    messages.push(tapped);
    for (const listener of [...listeners]) listener();
  };

  server.on("connection", (worker) => {
    const master = new WebSocket(new URL(WORKER_PATH, workerUrl));
    const early: string[] = [];
    master.on("open", () => {
      for (const data of early.splice(0)) master.send(data);
    });
    worker.on("message", (data: RawData) => {
      const text = data.toString();
      const decoded = decodeWorkerMessage(text);
      if (decoded.ok) record({ from: "worker", at: Date.now(), message: decoded.message });
      if (master.readyState === WebSocket.OPEN) master.send(text);
      else early.push(text);
    });
    master.on("message", (data: RawData) => {
      const text = data.toString();
      const decoded = decodeMasterMessage(text);
      if (decoded.ok) record({ from: "master", at: Date.now(), message: decoded.message });
      worker.send(text);
    });
    const forwardClose = (to: WebSocket) => (code: number, reason: Buffer) => {
      if (to.readyState === WebSocket.CLOSED || to.readyState === WebSocket.CLOSING) return;
      if (reservedCodes.has(code)) to.terminate();
      else to.close(code, reason.toString());
    };
    worker.on("close", forwardClose(master));
    master.on("close", forwardClose(worker));
    worker.on("error", () => master.terminate());
    master.on("error", () => worker.terminate());
  });

  return {
    url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`,
    messages,
    waitFor(predicate, what, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = messages.find(predicate);
          if (!found) return;
          done();
          resolve(found);
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`timed out waiting for: ${what}`));
        }, timeoutMs);
        const done = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      });
    },
    close() {
      for (const client of server.clients) client.terminate();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
