// Nothing outlives its owner: after a busy session and close(), no timer, socket or server made during it is left.
import { createHook } from "node:async_hooks";
import { describe, expect, it } from "vitest";
import { eventually, openaiClient, startSimWorker, startTestCoordinator } from "./support/cluster.js";

const trackedTypes = new Set(["Timeout", "TCPWRAP", "TCPSERVERWRAP", "TCPCONNECTWRAP", "HTTPINCOMINGMESSAGE"]);

/** Records every timer and socket created while enabled, and forgets each one when it is destroyed. */
function trackResources() {
  const live = new Map<number, string>();
  const hook = createHook({
    init(asyncId, type) {
      if (trackedTypes.has(type)) live.set(asyncId, type);
    },
    destroy(asyncId) {
      live.delete(asyncId);
    },
  }).enable();
  return {
    live,
    summary: () => [...live.values()].sort().join(", "),
    stop: () => hook.disable(),
  };
}

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

      // Poll on immediates, which are not tracked, so that the wait adds no timer of its own.
      const deadline = Date.now() + 5_000;
      while (resources.live.size > 0 && Date.now() < deadline) await new Promise((resolve) => setImmediate(resolve));
      expect(resources.summary()).toBe("");
      expect(coordinator.master.liveTasks).toBe(0);
    } finally {
      resources.stop();
    }
  });
});
