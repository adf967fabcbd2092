// A randomized soak: hundreds of requests while worker processes are killed and restarted at random.
// Every request must end complete or cleanly failed; nothing may hang, stay in the master, or keep generating.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { startChildWorker } from "./support/child-workers.js";
import { eventually, startTestCoordinator } from "./support/cluster.js";
import type { CliProcess } from "./support/processes.js";

type Outcome = "complete" | "failed-cleanly" | "aborted-by-client" | `bad: ${string}`;

const REQUESTS = 300;
const CONCURRENCY = 12;
const WORKERS = 3;

/** One request, streaming or not, maybe aborted by its client; classified by what the client saw. */
async function oneRequest(url: string, stream: boolean, abortAfterMs: number | undefined): Promise<Outcome> {
  const client = new AbortController();
  const hang = AbortSignal.timeout(25_000);
  const signal = AbortSignal.any([client.signal, hang]);
  const timer = abortAfterMs === undefined ? undefined : setTimeout(() => client.abort(), abortAfterMs);
  try {
    const response = await fetch(`${url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "simulator", messages: [{ role: "user", content: "soak" }], stream, max_tokens: 40 }),
      signal,
    });
    const text = await response.text();
    if (!stream) {
      const body = JSON.parse(text) as { choices?: Array<{ finish_reason: string }>; error?: { code: string } };
      if (response.status === 200 && body.choices?.[0]?.finish_reason) return "complete";
      if (response.status >= 500 && body.error?.code) return "failed-cleanly";
      return `bad: ${response.status} ${text.slice(0, 200)}`;
    }
    if (response.status !== 200) return `bad: stream status ${response.status}`;
    if (!text.trimEnd().endsWith("data: [DONE]")) return `bad: stream without [DONE]: ${text.slice(-200)}`;
    return text.includes('"error":{') ? "failed-cleanly" : "complete";
  } catch (error) {
    if (hang.aborted) return "bad: hung for 25 s";
    if (client.signal.aborted) return "aborted-by-client";
    return `bad: ${(error as Error).message}`;
  } finally {
    clearTimeout(timer);
  }
}

describe("soak under random worker crashes", () => {
  it(`${REQUESTS} requests while workers are killed -9 and restarted at random: none hangs, nothing is left`, async () => {
    const coordinator = await startTestCoordinator({ heartbeatMs: 200, heartbeatDeadlineMs: 2_000, queueTimeoutMs: 8_000, maxAttempts: 3 });
    const workers = new Map<string, CliProcess>();
    const spawnWorker = async (name: string) => {
      workers.set(name, await startChildWorker(coordinator, { name, tokensPerSecond: 150, prefillMs: 30, maxConcurrency: 4 }));
    };
    // The plan is random but reproducible: fast-check's seeded generator picks request kinds and the chaos schedule.
    const plan = fc.sample(
      fc.record({
        stream: fc.boolean(),
        // One request in six is abandoned by its client part-way.
        abortAfterMs: fc.oneof(
          { weight: 5, arbitrary: fc.constant(undefined) },
          { weight: 1, arbitrary: fc.integer({ min: 0, max: 300 }) },
        ),
      }),
      { numRuns: REQUESTS, seed: 20261125 },
    );
    const victims = fc.sample(fc.integer({ min: 0, max: WORKERS - 1 }), { numRuns: 200, seed: 7 });
    try {
      await Promise.all(Array.from({ length: WORKERS }, (_, i) => spawnWorker(`soak-${i}`)));

      let chaosOn = true;
      let kills = 0;
      const respawns: Array<Promise<void>> = [];
      const chaos = (async () => {
        for (const victim of victims) {
          await new Promise((resolve) => setTimeout(resolve, 400));
          if (!chaosOn) return;
          const name = `soak-${victim}`;
          const process = workers.get(name);
          if (!process) continue; // still restarting from an earlier kill
          workers.delete(name);
          await process.kill("SIGKILL");
          kills += 1;
          respawns.push(spawnWorker(name));
        }
      })();

      const outcomes: Outcome[] = [];
      let next = 0;
      await Promise.all(
        Array.from({ length: CONCURRENCY }, async () => {
          while (next < plan.length) {
            const step = plan[next++] as (typeof plan)[number];
            outcomes.push(await oneRequest(coordinator.url, step.stream, step.abortAfterMs));
          }
        }),
      );
      chaosOn = false;
      await chaos;
      await Promise.all(respawns);

      const tally = Object.fromEntries([...new Set(outcomes)].map((o) => [o, outcomes.filter((x) => x === o).length]));
      console.info(`soak: ${kills} worker kills; outcomes ${JSON.stringify(tally)}`);
      const bad = outcomes.filter((o) => o.startsWith("bad"));
      expect(bad).toEqual([]);
      expect(outcomes).toHaveLength(REQUESTS);
      expect(kills).toBeGreaterThanOrEqual(3);
      expect(outcomes.filter((o) => o === "complete").length).toBeGreaterThan(REQUESTS / 3);
      await eventually(() => coordinator.master.liveTasks === 0, "no task left in the master");
      await eventually(
        () => coordinator.master.snapshot().workers.every((w) => w.inflight.length === 0 && w.cancelling.length === 0),
        "no slot held on any worker",
      );
      // Heartbeats carry each worker's count of running generations: all must drop to zero.
      await eventually(
        () => {
          const state = coordinator.master.snapshot().workers;
          return state.length > 0 && state.every((w) => w.reportedRunning === 0);
        },
        "every engine to stop generating",
        5_000,
      );
    } finally {
      await Promise.all([...workers.values()].map((w) => w.kill("SIGKILL")));
      await coordinator.close();
    }
  }, 120_000);
});
