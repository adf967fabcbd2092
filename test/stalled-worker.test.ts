// A worker that heartbeats but stops answering cannot hang requests or soak up traffic: its tasks fail over (before
// output) or end with a clean error (after), and it is taken out of rotation until a probe task succeeds.
import OpenAI from "openai";
import { afterEach, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import { UNSTARTED_TASKS_LIMIT } from "../src/master/registry.js";
import { eventually, openaiClient, startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";
import { type ScriptedWorker, startScriptedWorker } from "./support/scripted-worker.js";
import { postSse } from "./support/sse.js";

function healthOf(coordinator: RunningCoordinator, name: string): string | undefined {
  return coordinator.master.snapshot().workers.find((w) => w.name === name)?.health.state;
}

describe("stalled workers", () => {
  let coordinator: RunningCoordinator | undefined;
  let worker: TestWorker | undefined;
  let scripted: ScriptedWorker | undefined;

  afterEach(async () => {
    await scripted?.close();
    await worker?.stop();
    await coordinator?.close();
    scripted = worker = coordinator = undefined;
  });

  it("fails over the tasks of a worker that takes them and never answers, and ejects it", async () => {
    // Given a worker that over-claims 4096 slots and answers nothing, beside a working one
    coordinator = await startTestCoordinator({ taskStallMs: 600, ejectMs: 60_000 });
    scripted = await startScriptedWorker(coordinator.workerUrl, { maxConcurrency: 4096, behaviour: { kind: "silent" } });
    worker = await startSimWorker(coordinator, { maxConcurrency: 4 });

    // When 21 requests arrive at once
    const client = openaiClient(coordinator);
    const replies = await Promise.all(
      Array.from({ length: 21 }, (_, i) =>
        client.chat.completions.create({ model: "simulator", messages: [{ role: "user", content: `request ${i}` }], max_tokens: 8 }),
      ),
    );

    // Then every one is answered, the stuck worker got no more than its unstarted allowance (plus the replacements
    // it may be handed before its stalls reach the ejection threshold, when they do not all come in the same sweep),
    // each of those was taken back from it, and it is out of rotation
    expect(replies.every((r) => r.choices[0]?.finish_reason === "length")).toBe(true);
    expect(scripted.assigned.length).toBeGreaterThan(0);
    expect(scripted.assigned.length).toBeLessThanOrEqual(UNSTARTED_TASKS_LIMIT + 2);
    await eventually(() => scripted!.cancelled.length === scripted!.assigned.length, "every stalled task to be cancelled on its worker");
    expect(healthOf(coordinator, scripted.name)).toBe("ejected");
    const metrics = await (await fetch(`${coordinator.url}/metrics`)).text();
    expect(metrics).toMatch(/coordinator_workers\{state="ejected"\} 1/);
    expect(metrics).toMatch(new RegExp(`coordinator_worker_ejections_total\\{worker="${scripted.name}"\\} 1`));
  }, 60_000);

  it("ends a stream whose worker goes silent after output with an error event and [DONE], and stops the worker", async () => {
    coordinator = await startTestCoordinator({ taskStallMs: 500 });
    scripted = await startScriptedWorker(coordinator.workerUrl, { behaviour: { kind: "stall-after", chunks: 2 } });

    const started = Date.now();
    const sse = await postSse(`${coordinator.url}/v1/chat/completions`, {
      model: "simulator",
      messages: [{ role: "user", content: "hi" }],
      stream: true,
      reasoning_format: "raw",
    });

    expect(sse.status).toBe(200);
    expect(sse.done).toBe(true);
    const last = sse.data.at(-1) as { error?: { code?: string; type?: string } };
    expect(last.error?.code).toBe("worker_stalled");
    expect(last.error?.type).toBe("server_error");
    expect(sse.data.some((d) => JSON.stringify(d).includes("piece 1"))).toBe(true);
    console.info(`silent worker after output: the client's stream ended ${Date.now() - started} ms after the request (stall limit 500 ms)`);
    await eventually(() => scripted!.cancelled.length === 1, "the worker to be told to stop");
  });

  it("answers a non-streamed request whose worker goes silent after output with a 504", async () => {
    coordinator = await startTestCoordinator({ taskStallMs: 500 });
    scripted = await startScriptedWorker(coordinator.workerUrl, { behaviour: { kind: "stall-after", chunks: 1 } });

    const error = await openaiClient(coordinator)
      .chat.completions.create({ model: "simulator", messages: [{ role: "user", content: "hi" }] })
      .catch((e: unknown) => e);

    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect((error as InstanceType<typeof OpenAI.APIError>).status).toBe(504);
    expect((error as InstanceType<typeof OpenAI.APIError>).code).toBe("worker_stalled");
  });

  it("does not take a long prompt that reports progress for a stall", async () => {
    coordinator = await startTestCoordinator({ taskStallMs: 400 });
    worker = await startSimWorker(coordinator, { prefillMs: 2_000 });

    const reply = await openaiClient(coordinator).chat.completions.create({
      model: "simulator",
      messages: [{ role: "user", content: "a long prompt" }],
      max_tokens: 5,
    });

    expect(reply.choices[0]?.finish_reason).toBe("length");
    expect(worker.log.aborted.size).toBe(0);
    expect(worker.log.started).toHaveLength(1);
  });

  it("lets an ejected worker back in rotation after its ejection time and a successful probe", async () => {
    // Given a worker that stalls once and is ejected for 800 ms
    coordinator = await startTestCoordinator({ taskStallMs: 300, ejectAfterFailures: 1, ejectMs: 800 });
    scripted = await startScriptedWorker(coordinator.workerUrl, { behaviour: { kind: "silent" } });
    const reply = openaiClient(coordinator).chat.completions.create({ model: "simulator", messages: [{ role: "user", content: "hi" }] });
    await eventually(() => healthOf(coordinator!, scripted!.name) === "ejected", "the worker to be ejected");
    const ejectedAt = Date.now();

    // When it answers again
    scripted.behaviour = { kind: "answer", text: "back again" };

    // Then the waiting request is its probe once the ejection time is up, and it is healthy after it
    const answer = await reply;
    expect(answer.choices[0]?.message.content).toBe("back again");
    await eventually(() => healthOf(coordinator!, scripted!.name) === "healthy", "the worker to be back in rotation");
    const backAfter = Date.now() - ejectedAt;
    console.info(`ejected worker back in rotation ${backAfter} ms after its ejection (ejection time 800 ms)`);
    expect(backAfter).toBeGreaterThanOrEqual(700);
    expect(scripted.assigned).toHaveLength(2);
  });

  it("keeps a worker that reconnects while ejected out of rotation until its ejection ends", async () => {
    // Given a worker ejected for a minute after one stall, whose task then ran on another worker
    coordinator = await startTestCoordinator({ taskStallMs: 300, ejectAfterFailures: 1, ejectMs: 60_000 });
    scripted = await startScriptedWorker(coordinator.workerUrl, { name: "comeback", behaviour: { kind: "silent" } });
    const reply = openaiClient(coordinator).chat.completions.create({ model: "simulator", messages: [{ role: "user", content: "hi" }], max_tokens: 4 });
    await eventually(() => healthOf(coordinator!, "comeback") === "ejected", "the worker to be ejected");
    worker = await startSimWorker(coordinator);
    expect((await reply).choices[0]?.finish_reason).toBe("length");
    const until = coordinator.master.snapshot().workers.find((w) => w.name === "comeback")?.health.ejectedUntil;

    // When it drops its connection and connects again under its name, answering now
    await scripted.close();
    await eventually(() => healthOf(coordinator!, "comeback") === undefined, "the worker to leave");
    scripted = await startScriptedWorker(coordinator.workerUrl, { name: "comeback", behaviour: { kind: "answer", text: "back" } });

    // Then it is still out of rotation, until the same time, and is handed nothing
    expect(coordinator.master.snapshot().workers.find((w) => w.name === "comeback")?.health).toMatchObject({ state: "ejected", ejectedUntil: until });
    await openaiClient(coordinator).chat.completions.create({ model: "simulator", messages: [{ role: "user", content: "again" }], max_tokens: 4 });
    expect(scripted.assigned).toEqual([]);
  });
});
