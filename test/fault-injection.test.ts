// Fault injection with real worker processes: kill -9 in prefill and mid-stream, a frozen socket, a coordinator restart.
import { createServer } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import { simulatedReply } from "../src/worker/engines/simulator.js";
import { startChildWorker } from "./support/child-workers.js";
import { eventually, startTestCoordinator } from "./support/cluster.js";
import type { CliProcess } from "./support/processes.js";
import { postSse } from "./support/sse.js";

const messages = [{ role: "user" as const, content: "Keep talking." }];

function workerNames(coordinator: RunningCoordinator): string[] {
  return coordinator.master.snapshot().workers.map((w) => w.name);
}

function inflightOf(coordinator: RunningCoordinator, name: string): string[] {
  return coordinator.master.snapshot().workers.find((w) => w.name === name)?.inflight ?? [];
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (typeof address !== "object" || address === null) throw new Error("no port");
  return address.port;
}

describe("fault injection with worker processes", () => {
  const coordinators: RunningCoordinator[] = [];
  const children: CliProcess[] = [];

  afterEach(async () => {
    for (const child of children.splice(0)) {
      child.child.kill("SIGCONT");
      await child.kill("SIGKILL");
    }
    for (const coordinator of coordinators.splice(0)) await coordinator.close();
  });

  it("kill -9 during prefill: the client gets the whole answer from another worker", async () => {
    const coordinator = await startTestCoordinator();
    coordinators.push(coordinator);
    const doomed = await startChildWorker(coordinator, { name: "doomed", prefillMs: 60_000 });
    children.push(doomed);
    const answer = postSse(`${coordinator.url}/v1/chat/completions`, { model: "simulator", messages, stream: true });
    await eventually(() => inflightOf(coordinator, "doomed").length === 1, "the doomed worker to take the task");
    const rescuer = await startChildWorker(coordinator, { name: "rescuer" });
    children.push(rescuer);

    await doomed.kill("SIGKILL");

    const result = await answer;
    const content = result.data.map((c) => (c.choices as Array<{ delta: { content?: string } }>)[0]?.delta.content ?? "").join("");
    expect(content).toBe(simulatedReply(messages).answer);
    expect(result.done).toBe(true);
  });

  it("kill -9 mid-stream: the client gets an error event and [DONE], promptly", async () => {
    const coordinator = await startTestCoordinator();
    coordinators.push(coordinator);
    const doomed = await startChildWorker(coordinator, { name: "doomed", tokensPerSecond: 20, replyTokens: 5_000 });
    children.push(doomed);
    const controller = new AbortController();
    const response = await fetch(`${coordinator.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "simulator", messages, stream: true, reasoning_format: "raw" }),
      signal: controller.signal,
    });
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let text = "";
    while (!text.includes('"content"')) text += decoder.decode((await reader.read()).value, { stream: true });

    await doomed.kill("SIGKILL");
    const killedAt = Date.now();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }

    expect(Date.now() - killedAt).toBeLessThan(5_000);
    expect(text).toContain('"code":"worker_lost"');
    expect(text.trimEnd().endsWith("data: [DONE]")).toBe(true);
    expect(coordinator.master.liveTasks).toBe(0);
  });

  it("a frozen worker (no close frame) is declared dead within the heartbeat deadline", async () => {
    const coordinator = await startTestCoordinator({ heartbeatMs: 100, heartbeatDeadlineMs: 1_000 });
    coordinators.push(coordinator);
    const frozen = await startChildWorker(coordinator, { name: "frozen", tokensPerSecond: 20, replyTokens: 5_000 });
    children.push(frozen);
    const stream = postSse(`${coordinator.url}/v1/chat/completions`, { model: "simulator", messages, stream: true, reasoning_format: "raw" });
    await eventually(() => (coordinator.master.snapshot().workers[0]?.completionTokens ?? 0) > 3, "tokens to flow");

    frozen.child.kill("SIGSTOP");
    const frozenAt = Date.now();
    await eventually(() => !workerNames(coordinator).includes("frozen"), "the frozen worker to be declared dead", 10_000);
    const declaredAfter = Date.now() - frozenAt;

    expect(declaredAfter).toBeGreaterThanOrEqual(900);
    expect(declaredAfter).toBeLessThan(4_000);
    const result = await stream;
    expect(JSON.stringify(result.data.at(-1))).toContain("worker_lost");
    expect(result.done).toBe(true);
  });

  it("a worker reconnects after the coordinator restarts, drops its old task, and serves again", async () => {
    const port = await freePort();
    const first = await startTestCoordinator({ port });
    const worker = await startChildWorker(first, { name: "survivor", tokensPerSecond: 20, replyTokens: 5_000 });
    children.push(worker);
    const orphanCandidate = postSse(`${first.url}/v1/chat/completions`, { model: "simulator", messages, stream: true }).catch(() => undefined);
    await eventually(() => inflightOf(first, "survivor").length === 1, "the worker to run a task");
    const [oldTask] = inflightOf(first, "survivor");

    await first.close();
    await orphanCandidate;
    await worker.waitFor(new RegExp(`"taskId":"${oldTask}".*"task stopped"`));
    const second = await startTestCoordinator({ port, heartbeatMs: 100 });
    coordinators.push(second);
    await eventually(() => workerNames(second).includes("survivor"), "the worker to rejoin", 15_000);

    const result = await postSse(`${second.url}/v1/chat/completions`, { model: "simulator", messages, max_tokens: 10, stream: true });
    expect(result.done).toBe(true);
    await eventually(
      () => second.master.snapshot().workers.every((w) => w.reportedRunning === 0 && w.inflight.length === 0),
      "the worker to report no generation running",
    );
  });
});
