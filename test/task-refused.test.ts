// A worker is the judge of its own slots: with the "refuse" feature it answers a task it has no room for with
// TaskRefused, and the master gives the task to another worker, or to the same one once it says it has room, unseen
// by the client and without spending its attempts. No worker ever runs more than its maxConcurrency at once.
import { afterEach, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import { WorkerRuntime } from "../src/worker/runtime.js";
import { silentLogger } from "../src/log.js";
import { eventually, openaiClient, startTestCoordinator, TEST_TOKEN } from "./support/cluster.js";
import { CountingSimulator } from "./support/counting-simulator.js";
import { HandWorker, type Message } from "./support/hand-worker.js";

/** Serves an assigned task by hand: progress, one chunk, finished. */
function serve(worker: HandWorker, assigned: Message, text: string): void {
  const taskId = assigned.taskId;
  worker.send({ type: "TaskProgress", taskId, promptTokensDone: 0 });
  worker.send({ type: "TokenChunk", taskId, seq: 0, text, tokens: 1 });
  worker.send({ type: "TaskFinished", taskId, finishReason: "stop", usage: { promptTokens: 3, completionTokens: 1 } });
}

function ask(coordinator: RunningCoordinator, model: string) {
  return openaiClient(coordinator).chat.completions.create({ model, messages: [{ role: "user", content: "hi" }] });
}

describe("TaskRefused", () => {
  let coordinator: RunningCoordinator | undefined;
  const workers: HandWorker[] = [];
  let runtime: WorkerRuntime | undefined;

  afterEach(async () => {
    await runtime?.stop();
    for (const worker of workers.splice(0)) await worker.close();
    await coordinator?.close();
    coordinator = runtime = undefined;
  });

  it("gives a refused task to another worker, unseen by its client, and counts the refusal", async () => {
    coordinator = await startTestCoordinator();
    const model = `refuse-${Math.random().toString(36).slice(2, 8)}`;
    for (let i = 0; i < 2; i++) {
      const { worker, welcome } = await HandWorker.join(coordinator.workerUrl, { model, maxConcurrency: 1, features: ["refuse"], heartbeats: false });
      expect(welcome.features).toEqual(["refuse"]);
      workers.push(worker);
    }
    // Whichever worker is assigned the task first refuses it; the next assignment is served.
    const seen: Array<{ worker: HandWorker; taskId: unknown }> = [];
    for (const worker of workers) {
      worker.onMessage((message) => {
        if (message.type !== "TaskAssigned") return;
        seen.push({ worker, taskId: message.taskId });
        if (seen.length === 1) worker.send({ type: "TaskRefused", taskId: message.taskId, reason: "no_slot" });
        else serve(worker, message, "served");
      });
    }

    const reply = await ask(coordinator, model);

    expect(reply.choices[0]?.message.content).toBe("served");
    expect(seen).toHaveLength(2);
    expect(seen[1]?.worker).not.toBe(seen[0]?.worker);
    expect(seen[1]?.taskId).toBe(seen[0]?.taskId);
    const refuser = seen[0]?.worker.name;
    const metrics = await (await fetch(`${coordinator.url}/metrics`)).text();
    expect(metrics).toContain(`coordinator_task_refusals_total{worker="${refuser}",reason="no_slot"} 1`);
  });

  it("keeps a task refused by its only worker until that worker says it has room, without spending its attempts", async () => {
    coordinator = await startTestCoordinator({ maxAttempts: 1 });
    const { worker } = await HandWorker.join(coordinator.workerUrl, { maxConcurrency: 1, features: ["refuse"], heartbeats: false });
    workers.push(worker);
    const assignedAt: number[] = [];
    const heardAt: number[] = [];
    worker.onMessage((message) => {
      if (message.type !== "TaskAssigned") return;
      assignedAt.push(Date.now());
      if (assignedAt.length > 2) return serve(worker, message, "at last");
      worker.send({ type: "TaskRefused", taskId: message.taskId, reason: "no_slot" });
      // Room again a little later: the heartbeat says so.
      setTimeout(() => {
        heardAt.push(Date.now());
        worker.send({ type: "Heartbeat", at: Date.now(), running: 0 });
      }, 200);
    });

    const reply = await ask(coordinator, worker.model);

    expect(reply.choices[0]?.message.content).toBe("at last");
    expect(assignedAt).toHaveLength(3);
    // Each new assignment came only after the heartbeat that followed a refusal.
    expect(assignedAt[1]).toBeGreaterThanOrEqual(heardAt[0] as number);
    expect(assignedAt[2]).toBeGreaterThanOrEqual(heardAt[1] as number);
  });

  it("closes a worker that refuses without the feature, or refuses a task it has started", async () => {
    // (A request whose worker was closed waits for another, which never comes: it ends at the queue timeout.)
    coordinator = await startTestCoordinator({ queueTimeoutMs: 500 });
    const plain = await HandWorker.join(coordinator.workerUrl, { heartbeats: false });
    workers.push(plain.worker);
    expect(plain.welcome.features).toBeUndefined();
    const first = ask(coordinator, plain.worker.model).catch((error: unknown) => error);
    const assigned = await plain.worker.take("TaskAssigned");
    plain.worker.send({ type: "TaskRefused", taskId: assigned.taskId, reason: "no_slot" });
    expect((await plain.worker.closed).code).toBe(4000);
    expect(plain.worker.protocolError).toBe("feature_not_negotiated");
    expect(await first).toMatchObject({ status: 503 });

    const late = await HandWorker.join(coordinator.workerUrl, { features: ["refuse"], heartbeats: false });
    workers.push(late.worker);
    const second = ask(coordinator, late.worker.model).catch((error: unknown) => error);
    const task = await late.worker.take("TaskAssigned");
    late.worker.send({ type: "TaskProgress", taskId: task.taskId, promptTokensDone: 0 });
    late.worker.send({ type: "TaskRefused", taskId: task.taskId, reason: "no_slot" });
    expect((await late.worker.closed).code).toBe(4000);
    expect(late.worker.protocolError).toBe("unexpected_refusal");
    expect(await second).toMatchObject({ status: 503 });
  });

  it("never runs more than its slots: a task stopped but still running makes our worker refuse the next, which runs once it is done", async () => {
    // Given a worker of one slot whose engine takes 1.5 s to stop, and a master that waits only 200 ms for the ack
    coordinator = await startTestCoordinator({ cancelAckMs: 200 });
    const engine = new CountingSimulator({ tokensPerSecond: 50, stopMs: 1_500 });
    runtime = new WorkerRuntime(engine, await engine.start(), {
      join: coordinator.workerUrl,
      token: TEST_TOKEN,
      name: "slow-to-stop",
      maxConcurrency: 1,
      reconnect: false,
      log: silentLogger,
    });
    await runtime.start();
    const client = openaiClient(coordinator);

    // When a client leaves mid-stream, and another asks as soon as the master has freed the slot
    const controller = new AbortController();
    const stream = await client.chat.completions.create(
      { model: "simulator", messages: [{ role: "user", content: "long" }], max_tokens: 500, stream: true },
      { signal: controller.signal },
    );
    for await (const _ of stream) break;
    controller.abort();
    await eventually(() => coordinator?.master.snapshot().workers[0]?.cancelling.length === 0 && engine.running === 1, "the master to stop waiting for the ack");
    const second = await client.chat.completions.create({ model: "simulator", messages: [{ role: "user", content: "next" }], max_tokens: 4 });

    // Then the second is answered, the worker refused it while the first was still stopping, and never ran two at once
    expect(second.choices[0]?.finish_reason).toBe("length");
    expect(engine.mostAtOnce).toBe(1);
    const metrics = await (await fetch(`${coordinator.url}/metrics`)).text();
    expect(metrics).toContain('coordinator_task_refusals_total{worker="slow-to-stop",reason="no_slot"} 1');
  }, 30_000);
});
