// GET /metrics: after completions, cancellations and a queued request, the exposition parses as Prometheus text
// and its counters and histograms say what happened.
import { afterEach, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { WORKER_PATH } from "../src/worker-protocol/index.js";
import type { RunningCoordinator } from "../src/coordinator.js";
import { eventually, openaiClient, startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";
import { type MetricFamily, parsePrometheusText, sampleValue } from "./support/prometheus-text.js";

const model = "simulator";
const messages = [{ role: "user" as const, content: "Count the tokens, please." }];

async function scrape(coordinator: RunningCoordinator): Promise<Map<string, MetricFamily>> {
  const response = await fetch(`${coordinator.url}/metrics`);
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  return parsePrometheusText(await response.text());
}

/** Opens a raw streaming request and resolves once its response headers arrived; `abort` drops the client. */
async function openStream(coordinator: RunningCoordinator, content: string, maxTokens?: number) {
  const controller = new AbortController();
  const response = await fetch(`${coordinator.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, messages: [{ role: "user", content }], stream: true, max_tokens: maxTokens }),
    signal: controller.signal,
  });
  expect(response.status).toBe(200);
  const text = response.text().catch(() => "");
  return { text, abort: () => controller.abort() };
}

describe("metrics", () => {
  let coordinator: RunningCoordinator | undefined;
  let worker: TestWorker | undefined;
  afterEach(async () => {
    await worker?.stop();
    await coordinator?.close();
  });

  it("counts requests, tokens, queueing and cancellations, and parses as Prometheus text", async () => {
    // Given one worker with a single slot, and keepalives after 20 ms of silence.
    coordinator = await startTestCoordinator({ keepaliveMs: 20 });
    worker = await startSimWorker(coordinator, { name: "metrics-sim", maxConcurrency: 1, replyTokens: 2000, tokensPerSecond: 400 });
    const client = openaiClient(coordinator);

    // When three requests complete (two whole, one streamed) and one asks for a model nobody serves,
    await client.chat.completions.create({ model, messages, max_tokens: 20 });
    await client.chat.completions.create({ model, messages, max_tokens: 20 });
    const streamed = await client.chat.completions.create({ model, messages, max_tokens: 20, stream: true });
    for await (const _chunk of streamed) {
      // read to the end
    }
    await expect(client.chat.completions.create({ model: "no-such-model", messages })).rejects.toThrow();

    // a long stream takes the only slot, a second request queues behind it and a third queues and leaves,
    const long = await openStream(coordinator, "a long one");
    await worker.log.until(() => worker!.log.started.length === 4 && (worker!.log.produced.get(worker!.log.started[3]!) ?? 0) > 0, "the long stream to produce");
    const queued = await openStream(coordinator, "queued then served", 40);
    const leaving = await openStream(coordinator, "queued then gone");
    await eventually(() => coordinator!.master.snapshot().models[0]?.queueDepth === 2, "two requests to queue");
    await eventually(async () => (sampleValue(await scrape(coordinator!), "coordinator_sse_keepalives_total") ?? 0) > 0, "a keepalive while queued");
    leaving.abort();
    await eventually(() => coordinator!.master.snapshot().models[0]?.queueDepth === 1, "the leaving request to leave the queue");
    // and the long stream's client leaves mid-stream, which lets the queued request run to its end:
    long.abort();
    const served = await queued.text;
    expect(served).toContain("data: [DONE]");
    await eventually(() => coordinator!.master.liveTasks === 0, "every task to end");

    // Then /metrics parses, and says exactly that.
    const metrics = await scrape(coordinator);
    const chat = "/v1/chat/completions";
    expect(sampleValue(metrics, "coordinator_http_requests_total", { route: chat, model, status: "200" })).toBe(6);
    expect(sampleValue(metrics, "coordinator_http_requests_total", { route: chat, model: "", status: "404" })).toBe(1);
    expect(sampleValue(metrics, "coordinator_tasks_total", { model, outcome: "finished" })).toBe(4);
    expect(sampleValue(metrics, "coordinator_tasks_total", { model, outcome: "cancelled" })).toBe(2);
    expect(sampleValue(metrics, "coordinator_cancellations_total", { model, stage: "queued" })).toBe(1);
    // The long stream left while the model was thinking or answering, depending on timing: one of the two.
    const leftMidStream =
      (sampleValue(metrics, "coordinator_cancellations_total", { model, stage: "streaming" }) ?? 0) +
      (sampleValue(metrics, "coordinator_cancellations_total", { model, stage: "thinking" }) ?? 0);
    expect(leftMidStream).toBe(1);
    expect(sampleValue(metrics, "coordinator_queued_requests_total", { model })).toBe(2);

    // Five tasks reached the worker; one of them waited in the queue for at least as long as the keepalive took.
    expect(sampleValue(metrics, "coordinator_queue_wait_seconds_count", { model })).toBe(5);
    expect(sampleValue(metrics, "coordinator_queue_wait_seconds_sum", { model })).toBeGreaterThan(0.02);
    expect(sampleValue(metrics, "coordinator_queue_wait_seconds_bucket", { model, le: "0.05" })).toBeGreaterThanOrEqual(4);
    expect(sampleValue(metrics, "coordinator_time_to_first_token_seconds_count", { model })).toBe(5);
    // (how many gaps depends on how the worker batches tokens into chunks under load; that there are, and short ones, does not)
    const gaps = sampleValue(metrics, "coordinator_inter_token_latency_seconds_count", { model }) ?? 0;
    expect(gaps).toBeGreaterThan(5);
    expect((sampleValue(metrics, "coordinator_inter_token_latency_seconds_sum", { model }) ?? Infinity) / gaps).toBeLessThan(0.5);
    expect(sampleValue(metrics, "coordinator_task_duration_seconds_count", { model, outcome: "finished" })).toBe(4);

    // Tokens out match the master's own count for the worker; tokens in come from the finished tasks' usage.
    const [snapshotWorker] = coordinator.master.snapshot().workers;
    const out = sampleValue(metrics, "coordinator_completion_tokens_total", { model, worker: "metrics-sim" });
    expect(out).toBe(snapshotWorker?.completionTokens);
    expect(out).toBeGreaterThan(100);
    expect(sampleValue(metrics, "coordinator_prompt_tokens_total", { model, worker: "metrics-sim" })).toBeGreaterThan(0);

    // Streams are all closed again; keepalives were counted; the worker and the empty queue are visible.
    expect(sampleValue(metrics, "coordinator_active_streams")).toBe(0);
    expect(sampleValue(metrics, "coordinator_sse_keepalives_total")).toBeGreaterThanOrEqual((served.match(/^: keepalive$/gm) ?? []).length);
    expect(sampleValue(metrics, "coordinator_workers", { state: "ready" })).toBe(1);
    expect(sampleValue(metrics, "coordinator_worker_busy_slots", { worker: "metrics-sim" })).toBe(0);
    expect(sampleValue(metrics, "coordinator_queue_depth", { model })).toBe(0);
    expect(sampleValue(metrics, "coordinator_live_tasks")).toBe(0);
    expect(sampleValue(metrics, "coordinator_worker_events_total", { event: "joined" })).toBe(1);
    expect(sampleValue(metrics, "coordinator_failovers_total", { model })).toBeUndefined();

    // The process's default metrics come along.
    expect(metrics.get("process_cpu_user_seconds_total")?.type).toBe("counter");
    expect(metrics.get("nodejs_eventloop_lag_seconds")?.type).toBe("gauge");

    // No label holds a task id, a request id or a prompt.
    for (const family of metrics.values()) {
      for (const sample of family.samples) {
        for (const value of Object.values(sample.labels)) expect(value).not.toMatch(/task-|chatcmpl-|queued then|a long one/);
      }
    }
  });

  it("counts workers refused for breaking the protocol, by error code", async () => {
    // Given a coordinator, when a peer joins with the wrong token and another sends something other than Hello,
    coordinator = await startTestCoordinator();
    const refusedWith = async (message: unknown) => {
      const socket = new WebSocket(new URL(WORKER_PATH, coordinator!.workerUrl));
      await new Promise((resolve) => socket.once("open", resolve));
      socket.send(JSON.stringify(message));
      return new Promise<number>((resolve) => socket.once("close", resolve));
    };
    const worker = { name: "intruder", device: { kind: "cpu", name: "cpu", memoryBytes: 0 }, maxConcurrency: 1, engine: "sim" };
    const models = [{ id: "simulator", contextLength: 1024 }];
    await refusedWith({ type: "Hello", protocolVersion: 1, token: "wrong-token-000", worker, models });
    await refusedWith({ type: "Heartbeat", at: 0 });

    // then each refusal is counted under its code, and no worker was registered.
    const metrics = await scrape(coordinator);
    expect(sampleValue(metrics, "coordinator_protocol_errors_total", { code: "unauthorized" })).toBe(1);
    expect(sampleValue(metrics, "coordinator_protocol_errors_total", { code: "hello_expected" })).toBe(1);
    expect(sampleValue(metrics, "coordinator_workers", { state: "ready" })).toBe(0);
  });
});
