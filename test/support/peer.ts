// A raw WebSocket peer on the worker endpoint, for tests that speak the protocol by hand (or break it on purpose).
import { type ClientOptions, WebSocket } from "ws";
import type { RunningCoordinator } from "../../src/coordinator.js";
import { type Hello, PROTOCOL_VERSION, WORKER_PATH } from "../../src/worker-protocol/index.js";
import { TEST_TOKEN } from "./cluster.js";

export interface Peer {
  socket: WebSocket;
  /** Every message the master sent, in order. */
  received: Array<Record<string, unknown>>;
  /** Resolves when the connection is closed, with the close code and reason the peer saw. */
  closed: Promise<{ code: number; reason: string }>;
  /** The first message of `type` the master sent (waits for it). */
  next(type: string): Promise<Record<string, unknown>>;
}

/** `options` go to ws, e.g. `localAddress` to connect from another loopback address. */
export function connectPeer(coordinator: Pick<RunningCoordinator, "workerUrl">, options: ClientOptions = {}): Promise<Peer> {
  const socket = new WebSocket(`${coordinator.workerUrl}${WORKER_PATH}`, options);
  const received: Array<Record<string, unknown>> = [];
  const waiters: Array<() => void> = [];
  socket.on("message", (data) => {
    received.push(JSON.parse(data.toString()) as Record<string, unknown>);
    for (const waiter of waiters.splice(0)) waiter();
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) =>
    socket.on("close", (code, reason) => resolve({ code, reason: reason.toString() })),
  );
  const next = async (type: string) => {
    for (;;) {
      const found = received.find((m) => m.type === type);
      if (found) return found;
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
  };
  return new Promise((resolve, reject) => {
    socket.once("open", () => {
      // A master that drops a misbehaving peer may reset the connection; the close event tells the test what it needs.
      socket.on("error", () => {});
      resolve({ socket, received, closed, next });
    });
    socket.once("error", reject);
  });
}

/** A valid Hello with the test token, a unique name and one model nobody asks for. */
export function hello(overrides: Partial<Hello> = {}): Hello {
  return {
    type: "Hello",
    protocolVersion: PROTOCOL_VERSION,
    token: TEST_TOKEN,
    worker: { name: `rogue-${Math.random()}`, device: { kind: "cpu", name: "test", memoryBytes: 1 }, maxConcurrency: 1, engine: "test" },
    models: [{ id: "rogue-model", contextLength: 1024 }],
    ...overrides,
  };
}
