// Cancellation latency: the client drops its connection; how long until the engine is told to stop.
import { nowMicros } from "./stamped-engine.js";
import { percentile, sleep, streamChat } from "./client.js";
import { type PathName, startPath } from "./paths.js";
import type { Row } from "./report.js";

type Phase = "flowing" | "thinking";

async function measure(name: PathName, phase: Phase, samples: number): Promise<{ p50: number; p99: number; missed: number }> {
  const engine =
    phase === "flowing"
      ? { kind: "sim" as const, options: { tokensPerSecond: 200, prefillMs: 0, replyTokens: 100_000 } }
      : { kind: "sim" as const, options: { tokensPerSecond: 1_000, prefillMs: 0, thinkMs: 600_000 } };
  const path = await startPath(name, { engine, workers: 1, maxConcurrency: 8 });
  const latencies: number[] = [];
  let missed = 0;
  try {
    for (let i = 0; i < samples; i++) {
      let frames = 0;
      let reached!: () => void;
      const flowing = new Promise<void>((resolve) => (reached = resolve));
      const handle = streamChat({
        url: path.url,
        headers: path.headers,
        body: { model: "simulator", messages: [{ role: "user", content: `Cancel me ${i}.` }] },
        onFrame: () => {
          frames += 1;
          if (frames === 3) reached();
        },
      });
      // Tokens flow: wait for visible content. Thinking: the pause begins ~15 ms in; wait well into it.
      if (phase === "flowing") await Promise.race([flowing, sleep(5_000)]);
      else await sleep(300);
      const aborted = new Promise<number>((resolve) => {
        const off = path.engineHost.onEvent((event) => {
          if (event.event !== "aborted") return;
          off();
          resolve(event.at as number);
        });
        setTimeout(() => {
          off();
          resolve(-1);
        }, 2_000);
      });
      const at = nowMicros();
      handle.abort();
      const stoppedAt = await aborted;
      if (stoppedAt < 0) missed += 1;
      else latencies.push((stoppedAt - at) / 1000);
      await handle.result;
    }
  } finally {
    await path.stop();
  }
  return { p50: percentile(latencies, 50), p99: percentile(latencies, 99), missed };
}

export async function cancellationScenario(samples: number, paths: PathName[]): Promise<Row[]> {
  const rows: Row[] = [];
  for (const phase of ["flowing", "thinking"] as const) {
    const c = paths.includes("coordinator") ? await measure("coordinator", phase, samples) : undefined;
    const d = paths.includes("direct") ? await measure("direct", phase, samples) : undefined;
    const scenario = `cancel ${phase}`;
    rows.push(
      { scenario, metric: `disconnect → engine stops p50 (${samples} samples)`, unit: "ms", coordinator: c?.p50, direct: d?.p50 },
      { scenario, metric: "disconnect → engine stops p99", unit: "ms", coordinator: c?.p99, direct: d?.p99, target: "≤50 ms", met: c !== undefined && c.p99 <= 50 && c.missed === 0 },
      { scenario, metric: "cancellations never seen by the engine (2 s)", unit: "count", coordinator: c?.missed, direct: d?.missed },
    );
  }
  return rows;
}
