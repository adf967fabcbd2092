// Heads that know each other through NATS JetStream (docs/scaling.md §2, §8, §9): two coordinators with `--nats`
// see each other in /v1/cluster, a head that stops leaves the other's list, and with nats-server killed both serve on
// and say NATS is away, until it returns and they see each other again. Nothing is left once they close.
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { afterEach, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import { HEADS_BUCKET, type HeadEntry } from "../src/heads/head-entry.js";
import type { HeadView } from "../src/heads/heads.js";
import { openBrowser } from "./support/browser.js";
import { eventually, openaiClient, startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";
import { keysRead, type NatsServer, startNatsServer, stopHeads } from "./support/nats.js";
import { parsePrometheusText, sampleValue } from "./support/prometheus-text.js";
import { settled, trackResources, type TrackedResources } from "./support/resources.js";

/** Expiry of a silent entry is 15 s; everything here is told by an event, so it takes far less. */
const DEADLINE_MS = 20_000;

async function headsOf(coordinator: RunningCoordinator): Promise<HeadView[]> {
  const cluster = (await (await fetch(`${coordinator.url}/v1/cluster`)).json()) as { heads: HeadView[] };
  return cluster.heads;
}

async function readiness(coordinator: RunningCoordinator): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${coordinator.url}/ready`);
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function natsConnectedGauge(coordinator: RunningCoordinator): Promise<number | undefined> {
  const text = await (await fetch(`${coordinator.url}/metrics`)).text();
  return sampleValue(parsePrometheusText(text), "coordinator_nats_connected");
}

/** Whether `coordinator` lists exactly itself and `other`, by name. */
async function seesBoth(coordinator: RunningCoordinator, selfName: string, otherName: string): Promise<boolean> {
  const heads = await headsOf(coordinator);
  return heads.length === 2 && heads[0]?.name === selfName && heads[0].self && heads[1]?.name === otherName && !heads[1].self;
}

async function chat(coordinator: RunningCoordinator): Promise<string> {
  const reply = await openaiClient(coordinator).chat.completions.create({ model: "simulator", messages: [{ role: "user", content: "hi" }] });
  return reply.choices[0]?.message.content ?? "";
}

describe("heads through NATS", () => {
  let nats: NatsServer | undefined;
  let resources: TrackedResources | undefined;
  const coordinators: RunningCoordinator[] = [];
  let worker: TestWorker | undefined;

  afterEach(async () => {
    await stopHeads(worker ? [worker] : [], coordinators, nats);
    resources?.stop();
    worker = nats = resources = undefined;
  });

  /**
   * nats-server, then heads `a` and `b` on it, once each has read the keys every head shares (until then its guarded
   * routes, /v1/cluster among them, answer 503); resources are tracked from before either starts.
   */
  async function twoHeads(): Promise<[RunningCoordinator, RunningCoordinator]> {
    resources = trackResources();
    nats = await startNatsServer();
    const a = await startTestCoordinator({ nats: [nats.url], headName: "a" });
    coordinators.push(a);
    const b = await startTestCoordinator({ nats: [nats.url], headName: "b" });
    coordinators.push(b);
    for (const head of [a, b]) await keysRead(head.url);
    return [a, b];
  }

  it("see each other, and a head that stops leaves the other's list at once; nothing is left after close", async () => {
    // Given two heads on one nats-server
    const [a, b] = await twoHeads();

    // Then each lists itself first, then the other, with its URL and counts
    await eventually(() => seesBoth(a, "a", "b"), "a to see b", DEADLINE_MS);
    await eventually(() => seesBoth(b, "b", "a"), "b to see a", DEADLINE_MS);
    const [selfA, otherB] = await headsOf(a);
    expect(selfA).toMatchObject({ name: "a", self: true, nats: "connected", url: a.url, inflight: 0, workers: 0 });
    expect(otherB).toMatchObject({ name: "b", self: false, url: b.url, inflight: 0, workers: 0 });
    expect(otherB?.id).not.toBe(selfA?.id);
    expect(await readiness(a)).toMatchObject({ body: { nats: "connected" } });
    expect((await readiness(a)).body).not.toHaveProperty("degraded");
    expect(await natsConnectedGauge(a)).toBe(1);

    // When b closes gracefully, it deletes its entry: a forgets it long before the entry's 15 s max age
    coordinators.splice(coordinators.indexOf(b), 1);
    await b.close();
    await eventually(async () => (await headsOf(a)).length === 1, "a to forget b", 5_000);

    // And once a and nats-server are gone, no timer or socket of either head is left
    coordinators.splice(0);
    await a.close();
    await nats?.stop();
    nats = undefined;
    const tracked = resources as TrackedResources;
    await settled(tracked);
    expect(tracked.summary()).toBe("");
  });

  it("tell a worker joined to one of them of the other, which it then joins and serves through", async () => {
    // Given two heads that see each other, and a worker told of head a only
    const [a, b] = await twoHeads();
    await eventually(async () => (await seesBoth(a, "a", "b")) && (await seesBoth(b, "b", "a")), "the heads to see each other", DEADLINE_MS);
    worker = await startSimWorker({ workerUrl: a.workerUrl }, { name: "learner" });

    // Then it learns of b from a's Welcome, joins it, and b's requests run on it
    await eventually(() => b.master.snapshot().workers.some((w) => w.name === "learner"), "the worker to join b", DEADLINE_MS);
    expect(await chat(b)).toContain("simulated");
    expect(await chat(a)).toContain("simulated");
  });

  it("show on the dashboard, from either head, every head with its address and counts", async () => {
    const [a, b] = await twoHeads();
    await eventually(async () => (await seesBoth(a, "a", "b")) && (await seesBoth(b, "b", "a")), "the heads to see each other", DEADLINE_MS);
    const browser = await openBrowser();
    try {
      await browser.page.goto(`${b.url}/`);
      const head = (name: string) => browser.page.locator(`#heads .head[data-head-name="${name}"]`);
      await head("a").waitFor();
      expect(await head("b").textContent()).toContain("b (this one)");
      expect(await head("a").textContent()).toContain(a.url);
      expect(await head("a").textContent()).toContain("0 in flight · 0 queued · 0 workers");
      // One of them plans placement, and both pages say which
      await eventually(async () => (await browser.page.locator("#heads .badge.planner").count()) === 1, "the planner marked", DEADLINE_MS);
      const planner = a.master.planning.leading ? "a" : "b";
      expect(await head(planner).locator(".badge.planner").textContent()).toBe("plans");
      expect(await browser.page.locator("#heads-hint").textContent()).toBe("NATS connected");
      expect(browser.pageErrors).toEqual([]);
    } finally {
      await browser.close();
    }
  });

  it("ignore an entry in the bucket that does not parse, and take a valid one written after it", async () => {
    // Given two heads that see each other (so the bucket is there), and another client of that bucket
    const [a] = await twoHeads();
    await eventually(() => seesBoth(a, "a", "b"), "a to see b", DEADLINE_MS);
    const connection = await connect({ servers: (nats as NatsServer).url });
    try {
      const bucket = await new Kvm(connection).open(HEADS_BUCKET);

      // When it writes an entry that is not JSON, one of the wrong shape, then a valid one
      await bucket.put("garbage", "not json");
      await bucket.put("wrong", JSON.stringify({ v: 2, id: "wrong", name: "w" }));
      const entry: HeadEntry = { v: 1, id: "c1", name: "c", url: "http://c:52415", startedAt: Date.now(), inflight: 3, workers: 2, at: Date.now() };
      await bucket.put("c1", JSON.stringify(entry));

      // Then the head lists the valid one only (the watch delivers in order, so the others were seen and ignored)
      await eventually(async () => (await headsOf(a)).some((head) => head.name === "c"), "a to see c", DEADLINE_MS);
      expect((await headsOf(a)).map((head) => head.name)).toEqual(["a", "b", "c"]);
      expect((await headsOf(a))[2]).toMatchObject({ id: "c1", url: "http://c:52415", self: false, nats: null, inflight: 3, workers: 2 });

      // And forgets it when it is deleted
      await bucket.delete("c1");
      await eventually(async () => (await headsOf(a)).length === 2, "a to forget c", DEADLINE_MS);
    } finally {
      await connection.close();
    }
  });

  it("forget a head that stops writing without a goodbye (killed) once 15 s passed since its entry came", { timeout: 60_000 }, async () => {
    // Given a head that sees an entry written once and never refreshed, as a head killed -9 leaves it
    const [a] = await twoHeads();
    await eventually(() => seesBoth(a, "a", "b"), "a to see b", DEADLINE_MS);
    const connection = await connect({ servers: (nats as NatsServer).url });
    try {
      const bucket = await new Kvm(connection).open(HEADS_BUCKET);
      const entry: HeadEntry = { v: 1, id: "k1", name: "killed", url: "http://k:52415", startedAt: Date.now(), inflight: 0, workers: 0, at: Date.now() };
      await bucket.put("k1", JSON.stringify(entry));
      await eventually(async () => (await headsOf(a)).some((head) => head.name === "killed"), "a to see the entry", DEADLINE_MS);
      const seenAt = Date.now();

      // Then it is listed until 15 s after it came, and gone soon after (nats-server 2.9 sends nothing when it ages out)
      await eventually(async () => !(await headsOf(a)).some((head) => head.name === "killed"), "a to forget it", 25_000);
      expect(Date.now() - seenAt).toBeGreaterThanOrEqual(14_000);
      expect((await headsOf(a)).map((head) => head.name)).toEqual(["a", "b"]);
    } finally {
      await connection.close();
    }
  });

  it("serve on and say so while nats-server is away, and see each other again when it returns", { timeout: 90_000 }, async () => {
    // Given two heads that see each other, and one worker joined to both
    const [a, b] = await twoHeads();
    const server = nats as NatsServer;
    worker = await startSimWorker({ workerUrl: `${a.workerUrl},${b.workerUrl}` });
    await eventually(() => seesBoth(a, "a", "b"), "a to see b", DEADLINE_MS);
    await eventually(() => seesBoth(b, "b", "a"), "b to see a", DEADLINE_MS);

    // When nats-server dies
    await server.kill();

    // Then both say NATS is away, ready but degraded, and both still answer through the worker
    for (const head of [a, b]) {
      await eventually(async () => (await readiness(head)).body.nats === "disconnected", "the head to notice NATS is gone", DEADLINE_MS);
      expect(await readiness(head)).toEqual({ status: 200, body: { status: "ready", workers: 1, nats: "disconnected", degraded: true } });
      expect(await natsConnectedGauge(head)).toBe(0);
      expect((await headsOf(head))[0]).toMatchObject({ self: true, nats: "disconnected" });
      expect(await chat(head)).toContain("Hello");
    }

    // When it comes back on the same port and store
    const returnedAt = Date.now();
    await server.restart();

    // Then both are connected again and see each other through entries written since
    for (const [head, self, other] of [[a, "a", "b"], [b, "b", "a"]] as const) {
      await eventually(
        async () => {
          const heads = await headsOf(head);
          return (await seesBoth(head, self, other)) && heads[0]?.nats === "connected" && Date.parse(heads[1]?.lastSeenAt ?? "") >= returnedAt;
        },
        `${self} to see ${other} again`,
        DEADLINE_MS,
      );
      expect(await readiness(head)).toMatchObject({ status: 200, body: { nats: "connected" } });
      expect(await natsConnectedGauge(head)).toBe(1);
    }

    // And nothing is left once the worker, the heads and nats-server are gone
    await worker.stop();
    worker = undefined;
    for (const coordinator of coordinators.splice(0)) await coordinator.close();
    await server.stop();
    nats = undefined;
    const tracked = resources as TrackedResources;
    await settled(tracked);
    expect(tracked.summary()).toBe("");
  });
});

describe("a head started while NATS is down", () => {
  it("is not ready and guards its routes with 503 until it joins NATS and reads the keys, and closes cleanly while still trying", async () => {
    const resources = trackResources();
    const nats = await startNatsServer();
    let coordinator: RunningCoordinator | undefined;
    let worker: TestWorker | undefined;
    try {
      // Given nats-server down when the head starts
      await nats.kill();
      coordinator = await startTestCoordinator({ nats: [nats.url], headName: "early" });
      worker = await startSimWorker(coordinator);

      // Then the head is up but not ready: until it has read the keys every head shares it cannot tell whether its API
      // is open, so guarded routes answer 503 (docs/scaling.md §7)
      expect(await readiness(coordinator)).toEqual({ status: 503, body: { status: "not_ready", workers: 1, nats: "disconnected", keys: "unavailable", degraded: true } });
      expect(await openaiClient(coordinator).models.list().catch((error: unknown) => error)).toMatchObject({ status: 503, code: "keys_unavailable" });
      // (a head that closes before it ever reached NATS stops trying: checked with the rest below)
      await (await startTestCoordinator({ nats: [nats.url], headName: "never" })).close();

      // When nats-server comes up, the head connects, reads the keys and serves
      await nats.restart();
      const head = coordinator;
      await eventually(async () => (await readiness(head)).status === 200, "the head to connect and read the keys", DEADLINE_MS);
      expect(await readiness(head)).toEqual({ status: 200, body: { status: "ready", workers: 1, nats: "connected" } });
      expect(await chat(head)).toContain("Hello");
      expect(await natsConnectedGauge(head)).toBe(1);

      // And when it is down again and the head closes while reconnecting, nothing of the client is left
      await nats.kill();
      await eventually(async () => (await readiness(head)).body.nats === "disconnected", "the head to notice NATS is gone", DEADLINE_MS);
      await worker.stop();
      worker = undefined;
      await coordinator.close();
      coordinator = undefined;
      await settled(resources);
      expect(resources.summary()).toBe("");
    } finally {
      await worker?.stop();
      await coordinator?.close();
      await nats.stop();
      resources.stop();
    }
  });
});

describe("a head without NATS", () => {
  it("lists only itself, says NATS is off, and has no NATS gauge", async () => {
    const coordinator = await startTestCoordinator({ headName: "alone" });
    try {
      const heads = await headsOf(coordinator);
      expect(heads).toEqual([expect.objectContaining({ name: "alone", self: true, nats: "off", url: coordinator.url, inflight: 0, workers: 0 })]);
      expect((await readiness(coordinator)).body).toEqual({ status: "not_ready", workers: 0, nats: "off" });
      const metrics = parsePrometheusText(await (await fetch(`${coordinator.url}/metrics`)).text());
      expect(sampleValue(metrics, "coordinator_heads")).toBe(1);
      expect(metrics.has("coordinator_nats_connected")).toBe(false);
    } finally {
      await coordinator.close();
    }
  });
});
