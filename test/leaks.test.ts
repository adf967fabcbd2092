// Nothing outlives its owner: after a busy session and close(), no timer, socket or server made during it is left.
import { describe, expect, it } from "vitest";
import { eventually, openaiClient, startSimWorker, startTestCoordinator } from "./support/cluster.js";
import { connectPeer } from "./support/peer.js";
import { connectRaw } from "./support/raw-http.js";
import { settled, trackResources } from "./support/resources.js";

describe("resource ownership", () => {
  it("leaves no timer, socket or server behind after streams, cancellations, queueing and close", async () => {
    const resources = trackResources();
    try {
      const coordinator = await startTestCoordinator({ keepaliveMs: 50, queueMax: 4 });
      const worker = await startSimWorker(coordinator, { maxConcurrency: 1, prefillMs: 100, thinkMs: 100 });
      const client = openaiClient(coordinator);
      const messages = [{ role: "user" as const, content: "hi" }];

      const finished = client.chat.completions.create({ model: "simulator", messages, stream: true }).then(async (s) => {
        for await (const _chunk of s) {
          // read to the end
        }
      });
      const controller = new AbortController();
      const cancelled = client.chat.completions
        .create({ model: "simulator", messages, stream: true }, { signal: controller.signal })
        .then(async (s) => {
          for await (const _chunk of s) {
            // aborted while queued
          }
        })
        .catch(() => {});
      await eventually(() => worker.log.started.length === 1, "one task to run");
      await eventually(() => coordinator.master.snapshot().models[0]?.queueDepth === 1, "the second task to queue");
      controller.abort();
      await Promise.all([finished, cancelled]);
      await client.chat.completions.create({ model: "simulator", messages });

      await worker.stop();
      await coordinator.close();

      await settled(resources);
      expect(resources.summary()).toBe("");
      expect(coordinator.master.liveTasks).toBe(0);
    } finally {
      resources.stop();
    }
  });

  it("leaves no timer behind when it closes soon after connections and workers waited beyond the pending caps", async () => {
    const resources = trackResources();
    try {
      const coordinator = await startTestCoordinator({ maxPendingConnections: 1, maxPendingWorkers: 1 });
      const clients = await Promise.all([1, 2, 3].map(() => connectRaw(coordinator.url)));
      const peers = await Promise.all([1, 2, 3].map(() => connectPeer(coordinator)));

      for (const client of clients) client.socket.destroy();
      for (const peer of peers) peer.socket.terminate();
      await Promise.all([...clients.map((client) => client.closed), ...peers.map((peer) => peer.closed)]);
      await coordinator.close();

      // Checked once the sockets are gone, before the cap's timer (a second's grace) would have fired by itself.
      await settled(resources, (type) => type !== "Timeout");
      expect(resources.summary()).toBe("");
    } finally {
      resources.stop();
    }
  });
});
