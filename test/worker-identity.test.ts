// A worker's name cannot be taken over: a second connection with the name of a live worker is refused, while a
// worker whose old connection died comes back under its name at once, its old tasks failed over, not stolen.
import { afterEach, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import { CloseCode } from "../src/worker-protocol/index.js";
import { eventually, openaiClient, startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";
import { type ScriptedWorker, startScriptedWorker } from "./support/scripted-worker.js";

describe("worker identity", () => {
  let coordinator: RunningCoordinator | undefined;
  const workers: TestWorker[] = [];
  const scripted: ScriptedWorker[] = [];

  afterEach(async () => {
    for (const worker of scripted.splice(0)) await worker.close();
    for (const worker of workers.splice(0)) await worker.stop();
    await coordinator?.close();
    coordinator = undefined;
  });

  it("refuses a connection that takes the name of a live worker, and the worker keeps its tasks", async () => {
    // Given a live worker in the middle of a reply
    coordinator = await startTestCoordinator();
    const real = await startSimWorker(coordinator, { name: "gpu-box-1", tokensPerSecond: 50, maxConcurrency: 1 });
    workers.push(real);
    const client = openaiClient(coordinator);
    const running = client.chat.completions.create({ model: "simulator", messages: [{ role: "user", content: "hi" }] });
    const waiting = client.chat.completions.create({ model: "simulator", messages: [{ role: "user", content: "me too" }] });
    await real.log.until(() => real.log.started.length === 1, "the first task to start");

    // When someone with the worker token connects under its name
    const impostor = startScriptedWorker(coordinator.workerUrl, { name: "gpu-box-1", model: "simulator" });

    // Then it is refused, sees no task, and both requests are answered by the real worker
    await expect(impostor).rejects.toThrow(/closed before Welcome: 4005/);
    const replies = await Promise.all([running, waiting]);
    expect(replies.map((r) => r.choices[0]?.finish_reason)).toEqual(["stop", "stop"]);
    expect(real.log.ended).toHaveLength(2);
    expect(coordinator.master.snapshot().workers.map((w) => w.id)).toEqual([real.id]);
  });

  it("lets a worker whose old connection stopped answering come back under its name, with its old task failed over", async () => {
    // Given a worker whose connection no longer answers (no pongs), holding a task it never started
    coordinator = await startTestCoordinator();
    const stale = await startScriptedWorker(coordinator.workerUrl, { name: "gpu-box-2", answerPings: false, behaviour: { kind: "silent" } });
    scripted.push(stale);
    const reply = openaiClient(coordinator).chat.completions.create({ model: "simulator", messages: [{ role: "user", content: "hi" }] });
    await eventually(() => stale.assigned.length === 1, "the task to reach the stale connection");

    // When the worker connects again under the same name
    const started = Date.now();
    const back = await startSimWorker(coordinator, { name: "gpu-box-2" });
    workers.push(back);
    const rejoinMs = Date.now() - started;

    // Then the new connection replaces the old one (closed 4004), and the task runs on it
    expect((await stale.closed).code).toBe(CloseCode.replaced);
    expect((await reply).choices[0]?.finish_reason).toBe("stop");
    expect(back.log.ended).toHaveLength(1);
    console.info(`a worker whose old connection was dead rejoined under its name in ${rejoinMs} ms`);
    expect(rejoinMs).toBeLessThan(8_000);
  });

  it("brings the demo worker back after its connection is closed by anything but its own stop", async () => {
    coordinator = await startTestCoordinator({ demo: true });
    const first = coordinator.master.registry.findByName("demo-simulator");
    expect(first).toBeDefined();

    first?.link.close(CloseCode.replaced, "a test drops the connection");

    await eventually(() => {
      const now = coordinator!.master.registry.findByName("demo-simulator");
      return now !== undefined && now !== first;
    }, "the demo worker to rejoin");
    const reply = await openaiClient(coordinator).chat.completions.create({ model: "simulator", messages: [{ role: "user", content: "hi" }] });
    expect(reply.choices[0]?.message.content).toContain("simulated model");
  });
});
