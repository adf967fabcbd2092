// Memory held for clients that stop reading stays within (clients × --slow-client-bytes) plus a fixed margin, however
// fast the worker produces: measured on a coordinator in a child process, against a full-speed simulator worker and
// a worker that sends 64 KiB chunks, while the coordinator keeps serving a normal client.
import { afterEach, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import { CHUNKY_MODEL, type ChunkyWorker, startChunkyWorker } from "./support/chunky-worker.js";
import { eventually, TEST_TOKEN, type TestWorker, startSimWorker } from "./support/cluster.js";
import { type CliProcess, spawnCli } from "./support/processes.js";
import { type NonReadingClient, openNonReadingStream, rssOf } from "./support/slow-readers.js";

const SLOW_CLIENT_BYTES = 256 * 1024;
/** Room for the V8 heap's own growth, buffers of the worker connection and the normal client's request. */
const MARGIN_BYTES = 96 * 1024 * 1024;

async function startChildCoordinator(): Promise<{ process: CliProcess; at: Pick<RunningCoordinator, "url" | "workerUrl" | "port"> }> {
  const process = spawnCli(
    ["--host", "127.0.0.1", "--port", "0", "--slow-client-bytes", String(SLOW_CLIENT_BYTES), "--slow-client-ms", "120000", "--log-level", "warn"],
    { COORDINATOR_WORKER_TOKEN: TEST_TOKEN },
  );
  const [, url, port] = (await process.waitFor(/API:\s+(http:\/\/127\.0\.0\.1:(\d+))\/v1/)) as RegExpMatchArray;
  return { process, at: { url: url as string, port: Number(port), workerUrl: `ws://127.0.0.1:${port}` } };
}

async function normalReplyMs(url: string): Promise<number> {
  const started = performance.now();
  const response = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "simulator", messages: [{ role: "user", content: "hi" }], stream: true, max_tokens: 50 }),
  });
  const text = await response.text();
  expect(text.trimEnd().endsWith("data: [DONE]")).toBe(true);
  return performance.now() - started;
}

/** The highest RSS over a few samples (a growing backlog would show as a rising peak). */
async function peakRss(pid: number, samples = 5): Promise<number> {
  let peak = 0;
  for (let i = 0; i < samples; i++) {
    peak = Math.max(peak, await rssOf(pid));
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return peak;
}

describe("memory per non-reading stream", () => {
  let child: CliProcess | undefined;
  let worker: TestWorker | undefined;
  let chunky: ChunkyWorker | undefined;
  const clients: NonReadingClient[] = [];

  afterEach(async () => {
    for (const client of clients.splice(0)) client.destroy();
    await chunky?.close();
    await worker?.stop();
    await child?.kill();
    chunky = worker = child = undefined;
  });

  for (const streams of [20, 100]) {
    it(`stays within ${streams} × the slow-client limit against a full-speed worker`, async () => {
      const { process, at } = await startChildCoordinator();
      child = process;
      worker = await startSimWorker(at, { tokensPerSecond: 0, replyTokens: 100_000_000, maxConcurrency: streams + 1 });
      await normalReplyMs(at.url);
      const pid = process.child.pid as number;
      const before = await rssOf(pid);

      for (let i = 0; i < streams; i++) clients.push(await openNonReadingStream(at.port, "simulator"));
      await worker.log.until(() => worker!.log.paused.size >= streams, "every stream's generation to wait for its client", 120_000);
      const growth = (await peakRss(pid)) - before;
      const normalMs = await normalReplyMs(at.url);

      console.info(`${streams} non-reading streams: RSS +${(growth / 2 ** 20).toFixed(1)} MiB (${(growth / streams / 1024).toFixed(0)} KiB each); a normal reply meanwhile took ${normalMs.toFixed(0)} ms`);
      expect(growth).toBeLessThan(streams * SLOW_CLIENT_BYTES + MARGIN_BYTES);
    }, 180_000);
  }

  it("stays within the limit against a worker that sends 64 KiB chunks", async () => {
    const streams = 20;
    const { process, at } = await startChildCoordinator();
    child = process;
    chunky = await startChunkyWorker(at.workerUrl);
    worker = await startSimWorker(at, { maxConcurrency: 2 });
    await normalReplyMs(at.url);
    const pid = process.child.pid as number;
    const before = await rssOf(pid);

    for (let i = 0; i < streams; i++) clients.push(await openNonReadingStream(at.port, CHUNKY_MODEL));
    await eventually(() => chunky!.waiting.size >= streams, "every task to wait for credit", 120_000);
    const growth = (await peakRss(pid)) - before;
    const normalMs = await normalReplyMs(at.url);

    console.info(`${streams} non-reading streams of 64 KiB chunks: RSS +${(growth / 2 ** 20).toFixed(1)} MiB; a normal reply meanwhile took ${normalMs.toFixed(0)} ms`);
    expect(growth).toBeLessThan(streams * SLOW_CLIENT_BYTES + MARGIN_BYTES);
  }, 180_000);
});
