// Request logs: a chat request leaves exactly one JSON completion line carrying its request id, and no secret.
import { afterEach, describe, expect, it } from "vitest";
import { serveDefaults } from "../src/config.js";
import { type RunningCoordinator, startCoordinator } from "../src/coordinator.js";
import { createLogger, flatLineLogger } from "../src/log.js";
import { eventually, startSimWorker, TEST_TOKEN, type TestWorker } from "./support/cluster.js";

const API_KEY = "sk-test-secret-key-9f8e7d6c5b4a";
const PROMPT = "my secret prompt text zebra-quartz-41";

/** Captures the coordinator's log lines as a JSON destination stream would receive them. */
function captureLog() {
  const lines: string[] = [];
  const log = createLogger("info", "coordinator", { format: "json", destination: { write: (line: string) => void lines.push(line) } });
  const records = () => lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  return { log, lines, records };
}

async function chat(coordinator: RunningCoordinator, body: Record<string, unknown>, headers: Record<string, string> = {}) {
  return fetch(`${coordinator.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${API_KEY}`, ...headers },
    body: JSON.stringify(body),
  });
}

describe("request log", () => {
  let coordinator: RunningCoordinator | undefined;
  let worker: TestWorker | undefined;
  afterEach(async () => {
    await worker?.stop();
    await coordinator?.close();
  });

  const start = async () => {
    const capture = captureLog();
    coordinator = await startCoordinator(
      serveDefaults({ host: "127.0.0.1", port: 0, workerToken: TEST_TOKEN, apiKey: [API_KEY] }),
      capture.log,
    );
    worker = await startSimWorker(coordinator, { name: "log-sim" });
    return capture;
  };

  it("writes one JSON line per completed request, with its id, model, worker, status, tokens and timings, and no secret", async () => {
    // Given a coordinator that requires an API key, logging JSON to a captured stream,
    const capture = await start();

    // when a client streams one completion, giving its own request id,
    const response = await chat(
      coordinator!,
      { model: "simulator", messages: [{ role: "user", content: PROMPT }], stream: true },
      { "X-Request-Id": "client-request-1" },
    );
    expect(response.status).toBe(200);
    expect(response.headers.get("x-request-id")).toBe("client-request-1");
    expect(await response.text()).toContain("[DONE]");

    // then exactly one completion line carries that id and everything an operator asks about the request,
    await eventually(() => capture.records().some((r) => r.msg === "chat request completed"), "the completion line");
    const completed = capture.records().filter((r) => r.msg === "chat request completed");
    expect(completed).toHaveLength(1);
    const line = completed[0]!;
    expect(line).toMatchObject({
      level: 30,
      requestId: "client-request-1",
      route: "/v1/chat/completions",
      model: "simulator",
      stream: true,
      worker: "log-sim",
      workerId: worker!.id,
      status: 200,
      outcome: "finished",
      finishReason: "stop",
    });
    expect(line.completionTokens).toEqual(expect.any(Number));
    expect(line.completionTokens as number).toBeGreaterThan(10);
    expect(line.promptTokens as number).toBeGreaterThan(0);
    expect(line.ttftMs).toEqual(expect.any(Number));
    expect(line.durationMs as number).toBeGreaterThanOrEqual(line.ttftMs as number);
    expect(line).not.toHaveProperty("cancelStage");

    // and no line anywhere holds the API key, the worker token or the prompt.
    const all = capture.lines.join("");
    expect(all).not.toContain(API_KEY);
    expect(all).not.toContain(TEST_TOKEN);
    expect(all).not.toContain("zebra-quartz");
    // Every line is one JSON object.
    for (const text of capture.lines) expect(() => JSON.parse(text)).not.toThrow();
  });

  it("gives a request without an id a fresh one, and logs rejections and cancellations with their status and stage", async () => {
    const capture = await start();

    // A request for a model nobody serves: answered 404, logged once with a generated id.
    const missing = await chat(coordinator!, { model: "nobody-serves-this", messages: [{ role: "user", content: PROMPT }] });
    expect(missing.status).toBe(404);
    const generated = missing.headers.get("x-request-id");
    expect(generated).toMatch(/^[0-9a-f-]{36}$/);

    // A client that leaves mid-stream: logged once as cancelled, with the stage it was in.
    const controller = new AbortController();
    const streaming = await fetch(`${coordinator!.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${API_KEY}`, "X-Request-Id": "leaves-early" },
      body: JSON.stringify({ model: "simulator", messages: [{ role: "user", content: PROMPT }], stream: true }),
      signal: controller.signal,
    });
    const reader = streaming.body!.getReader();
    await reader.read();
    await worker!.log.until(() => worker!.log.produced.size > 0, "tokens to flow");
    controller.abort();

    // A request id that is not plain text is replaced, not logged.
    const odd = await chat(coordinator!, { model: "nobody-serves-this", messages: [] }, { "X-Request-Id": "bad id with spaces" });
    expect(odd.headers.get("x-request-id")).not.toBe("bad id with spaces");

    await eventually(() => capture.records().filter((r) => r.msg === "chat request completed").length === 3, "three completion lines");
    const completed = capture.records().filter((r) => r.msg === "chat request completed");
    expect(completed.find((r) => r.requestId === generated)).toMatchObject({ status: 404, outcome: "rejected", model: "nobody-serves-this" });
    expect(completed.find((r) => r.requestId === "leaves-early")).toMatchObject({
      outcome: "cancelled",
      cancelStage: "streaming",
      worker: "log-sim",
      status: 200,
    });
    expect(capture.lines.join("")).not.toContain("bad id with spaces");
    expect(capture.lines.join("")).not.toContain(API_KEY);
  });

  it("censors secrets and prompts in log lines: nested too in general, at the top level in the flat completion line", () => {
    const { log, records } = captureLog();
    log.info({ workerToken: "tok-1", config: { apiKeys: ["key-2"], messages: [{ content: PROMPT }] } }, "general");
    flatLineLogger(log).info({ requestId: "r1", token: "tok-3", authorization: `Bearer ${API_KEY}`, prompt: PROMPT, model: "m" }, "flat");
    const [general, flat] = records();
    expect(general).toMatchObject({ workerToken: "[redacted]", config: { apiKeys: "[redacted]", messages: "[redacted]" } });
    expect(flat).toMatchObject({ requestId: "r1", token: "[redacted]", authorization: "[redacted]", prompt: "[redacted]", model: "m" });
    expect(JSON.stringify(records())).not.toMatch(/tok-1|key-2|tok-3|zebra-quartz|sk-test/);
  });
});
