// Embeddings through the coordinator (simulator workers in their own process): a batch as one request, against the
// same inputs as one request each. Answers whether a batch should be split into tasks (docs/benchmarks.md).
import { floatsJson } from "../src/api/embedding-route.js";
import { percentile } from "./client.js";
import { startPath } from "./paths.js";
import type { Row } from "./report.js";

export interface EmbeddingsOptions {
  inputs: number;
  dimensions: number;
  repeats: number;
  /** Single-input requests in flight at once, for the split variant. */
  parallel: number;
}

async function embed(url: string, input: string[], dimensions: number, format: "float" | "base64"): Promise<number> {
  const response = await fetch(`${url}/v1/embeddings`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "simulator", input, dimensions, encoding_format: format }),
  });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`embeddings answered ${response.status}: ${text.slice(0, 200)}`);
  return text.length;
}

export async function embeddingsScenario(options: EmbeddingsOptions): Promise<Row[]> {
  const { inputs, dimensions, repeats, parallel } = options;
  const texts = Array.from({ length: inputs }, (_, i) => `document number ${i} about the coordinator and its workers`);
  const path = await startPath("coordinator", { engine: { kind: "sim", options: { prefillMs: 0, tokensPerSecond: 0 } }, workers: 2, maxConcurrency: 64 });
  const rows: Row[] = [];
  try {
    const timed = async (run: () => Promise<unknown>) => {
      const times: number[] = [];
      await run(); // warm-up
      for (let i = 0; i < repeats; i++) {
        const at = performance.now();
        await run();
        times.push(performance.now() - at);
      }
      return percentile(times, 50);
    };
    const scenario = `embeddings ${inputs}×${dimensions}`;
    for (const format of ["float", "base64"] as const) {
      let bytes = 0;
      const batch = await timed(async () => (bytes = await embed(path.url, texts, dimensions, format)));
      rows.push(
        { scenario, metric: `one request, ${format}: time (p50 of ${repeats})`, unit: "ms", coordinator: batch },
        { scenario, metric: `one request, ${format}: vectors per second`, unit: "vec/s", coordinator: (inputs / batch) * 1000 },
        { scenario, metric: `one request, ${format}: body`, unit: "KiB", coordinator: bytes / 1024 },
      );
    }
    const split = await timed(async () => {
      let next = 0;
      const lane = async () => {
        while (next < texts.length) {
          const text = texts[next++] as string;
          await embed(path.url, [text], dimensions, "base64");
        }
      };
      await Promise.all(Array.from({ length: parallel }, lane));
    });
    const batch = rows.find((row) => row.metric.startsWith("one request, base64: time"))?.coordinator as number;
    rows.push(
      { scenario, metric: `one request per input (${parallel} at once), base64: time`, unit: "ms", coordinator: split },
      { scenario, metric: "split ÷ one request (time)", unit: "x", coordinator: split / batch },
    );
  } finally {
    await path.stop();
  }
  // The simulator's vectors are sparse (mostly zeros): what writing dense float vectors as JSON costs, in process.
  const dense = Array.from({ length: 256 }, () => Float32Array.from({ length: dimensions }, () => (Math.random() - 0.5) / Math.sqrt(dimensions)));
  const at = performance.now();
  let chars = 0;
  for (const vector of dense) chars += floatsJson(vector).length;
  const microseconds = ((performance.now() - at) * 1000) / (dense.length * dimensions);
  rows.push({ scenario: "embeddings JSON", metric: `dense float32 values as JSON (${(chars / (dense.length * dimensions)).toFixed(1)} chars each)`, unit: "µs/value", coordinator: microseconds });
  return rows;
}
