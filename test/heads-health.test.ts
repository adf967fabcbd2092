// Ejections and wrong-token bans shared by every head through NATS (docs/scaling.md §7): a worker joined to two heads
// whose tasks fail through one is out of rotation on both until a probe succeeds, and an address that sent wrong
// tokens to one head is turned away by the other while the ban lasts.
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { afterEach, describe, expect, it } from "vitest";
import type { ServeConfig } from "../src/config.js";
import type { RunningCoordinator } from "../src/coordinator.js";
import { ejectionKey, type HealthRecord, WORKER_HEALTH_BUCKET } from "../src/heads/health-record.js";
import { silentLogger } from "../src/log.js";
import { CloseCode } from "../src/worker-protocol/index.js";
import { defaultSimulatorOptions, SimulatorEngine, type SimulatorOptions } from "../src/worker/engines/simulator.js";
import { WorkerRuntime } from "../src/worker/runtime.js";
import { eventually, openaiClient, startSimWorker, startTestCoordinator, TEST_TOKEN, type TestWorker } from "./support/cluster.js";
import { keysRead, type NatsServer, startNatsServer } from "./support/nats.js";
import { connectPeer, hello, type Peer } from "./support/peer.js";
import { parsePrometheusText, sampleValue } from "./support/prometheus-text.js";
import { settled, trackResources, type TrackedResources } from "./support/resources.js";

const DEADLINE_MS = 10_000;
const WRONG = "not-the-token-123";

interface WorkerHealthView {
  name: string;
  health: { state: string; ejections: number; ejectedUntil: string | null };
}

async function workerOn(coordinator: RunningCoordinator, name: string): Promise<WorkerHealthView | undefined> {
  const cluster = (await (await fetch(`${coordinator.url}/v1/cluster`)).json()) as { workers: WorkerHealthView[] };
  return cluster.workers.find((w) => w.name === name);
}

async function metric(coordinator: RunningCoordinator, name: string): Promise<number> {
  return sampleValue(parsePrometheusText(await (await fetch(`${coordinator.url}/metrics`)).text()), name) ?? 0;
}

function ask(coordinator: RunningCoordinator, content: string) {
  return openaiClient(coordinator).chat.completions.create({ model: "simulator", messages: [{ role: "user", content }], max_tokens: 4 });
}

describe("worker health shared by heads through NATS", () => {
  let nats: NatsServer | undefined;
  let resources: TrackedResources | undefined;
  const coordinators: RunningCoordinator[] = [];
  const peers: Peer[] = [];
  let runtime: WorkerRuntime | undefined;
  let worker: TestWorker | undefined;

  afterEach(async () => {
    for (const peer of peers.splice(0)) peer.socket.terminate();
    await runtime?.stop();
    await worker?.stop();
    for (const coordinator of coordinators.splice(0)) await coordinator.close();
    await nats?.stop();
    resources?.stop();
    runtime = worker = nats = resources = undefined;
  });

  async function twoHeads(overrides: Partial<ServeConfig> = {}): Promise<[RunningCoordinator, RunningCoordinator]> {
    resources = trackResources();
    nats = await startNatsServer();
    for (const headName of ["a", "b"]) {
      const head = await startTestCoordinator({ nats: [nats.url], headName, ...overrides });
      coordinators.push(head);
      await keysRead(head.url);
    }
    return coordinators as [RunningCoordinator, RunningCoordinator];
  }

  /** The bucket as another client sees it. */
  async function record(key: string): Promise<HealthRecord | undefined> {
    const connection = await connect({ servers: (nats as NatsServer).url });
    try {
      const entry = await (await new Kvm(connection).open(WORKER_HEALTH_BUCKET)).get(key);
      return entry?.operation === "PUT" ? (entry.json() as HealthRecord) : undefined;
    } finally {
      await connection.close();
    }
  }

  /** Says Hello with `token` from `localAddress`; resolves with how the head answered. */
  async function join(target: RunningCoordinator, token: string, localAddress = "127.0.0.1"): Promise<number | "welcomed"> {
    const peer = await connectPeer(target, { localAddress });
    peers.push(peer);
    peer.socket.send(JSON.stringify(hello({ token })));
    const answer = await Promise.race([peer.closed, peer.next("Welcome").then(() => "welcomed" as const)]);
    return answer === "welcomed" ? answer : answer.code;
  }

  it("take a worker whose tasks fail through one head out of rotation on both, until a probe succeeds; its record then goes", async () => {
    // Given two heads, and one worker joined to both whose engine fails every task
    const [a, b] = await twoHeads({ ejectAfterFailures: 3, ejectMs: 2_500, queueTimeoutMs: 30_000 });
    let starts = 0;
    // (the test keeps the engine's options, to make it well again later)
    const options: SimulatorOptions = { ...defaultSimulatorOptions, prefillMs: 0, tokensPerSecond: 200, failAfterTokens: 0, hooks: { onStart: () => void (starts += 1) } };
    const engine = new SimulatorEngine([], options);
    runtime = new WorkerRuntime(engine, await engine.start(), {
      join: `${a.workerUrl},${b.workerUrl}`,
      token: TEST_TOKEN,
      name: "flaky",
      maxConcurrency: 2,
      reconnect: true,
      log: silentLogger,
    });
    await runtime.start();
    await eventually(async () => (await workerOn(b, "flaky"))?.health.state === "healthy", "the worker to join b", DEADLINE_MS);

    // When its tasks fail through head a until a ejects it
    for (let i = 0; i < 3; i++) await expect(ask(a, `doomed ${i}`)).rejects.toThrow();
    const onA = await workerOn(a, "flaky");
    expect(onA?.health).toMatchObject({ state: "ejected", ejections: 1 });

    // Then b shows it ejected until the same time, and the record says so
    await eventually(async () => (await workerOn(b, "flaky"))?.health.state === "ejected", "b to eject the worker too", DEADLINE_MS);
    expect((await workerOn(b, "flaky"))?.health).toMatchObject({ ejections: 1, ejectedUntil: onA?.health.ejectedUntil });
    const until = Date.parse(onA?.health.ejectedUntil ?? "");
    expect(await record(ejectionKey("flaky"))).toMatchObject({ v: 1, kind: "eject", worker: "flaky", until, ejections: 1 });

    // And b routes nothing to it: a request for its model waits in b's queue
    let answered = false;
    const waiting = ask(b, "patient").then((reply) => {
      answered = true;
      return reply;
    });
    await eventually(() => b.master.snapshot().models.some((m) => m.id === "simulator" && m.queueDepth === 1), "the request to wait on b", DEADLINE_MS);
    expect([answered, starts]).toEqual([false, 3]);

    // When the worker is well again, the ejection ends and b's waiting request is its probe there
    options.failAfterTokens = undefined;
    const reply = await waiting;
    expect(reply.choices[0]?.finish_reason).toBe("length");
    expect(Date.now()).toBeGreaterThanOrEqual(until - 100);
    await eventually(async () => (await workerOn(b, "flaky"))?.health.state === "healthy", "the worker back in rotation on b", DEADLINE_MS);

    // Then the probe's head deleted the record; a, which sent no probe, has it on probation (one task at a time)
    await eventually(async () => (await record(ejectionKey("flaky"))) === undefined, "the record to go", DEADLINE_MS);
    await eventually(async () => (await workerOn(a, "flaky"))?.health.state === "probation", "a to put it on probation", DEADLINE_MS);
  }, 60_000);

  it("apply an ejection recorded before the worker connected when it registers", async () => {
    // Given two heads, and an ejection of "late" written into the bucket by some head
    const [a, b] = await twoHeads({ queueTimeoutMs: 30_000 });
    await eventually(async () => (await metric(a, "coordinator_nats_connected")) === 1, "a to reach NATS", DEADLINE_MS);
    const connection = await connect({ servers: (nats as NatsServer).url });
    const until = Date.now() + 60_000;
    try {
      const bucket = await new Kvm(connection).open(WORKER_HEALTH_BUCKET);
      const ejection: HealthRecord = { v: 1, kind: "eject", worker: "late", until, ejections: 2, by: "elsewhere" };
      await bucket.put(ejectionKey("late"), JSON.stringify(ejection));
      // (and one filed under another worker's key, which nobody believes)
      await bucket.put(ejectionKey("innocent"), JSON.stringify({ ...ejection, worker: "late" }));
    } finally {
      await connection.close();
    }
    await eventually(async () => (await record(ejectionKey("late"))) !== undefined, "the record to be written", DEADLINE_MS);

    // When a worker of that name connects to b, and one named "innocent" too
    worker = await startSimWorker(b, { name: "late" });
    const innocent = await startSimWorker(b, { name: "innocent" });
    try {
      // Then b has "late" out of rotation from the start, until the recorded end, and "innocent" in it
      await eventually(async () => (await workerOn(b, "late"))?.health.state === "ejected", "b to eject the late worker", DEADLINE_MS);
      expect((await workerOn(b, "late"))?.health).toEqual({ state: "ejected", consecutiveFailures: 0, ejections: 2, ejectedUntil: new Date(until).toISOString() });
      expect((await workerOn(b, "innocent"))?.health.state).toBe("healthy");
    } finally {
      await innocent.stop();
    }
  }, 30_000);

  it("turn an address away on one head while another banned it for wrong tokens, and let it in once the ban is over", async () => {
    // Given two heads that ban after 2 wrong tokens, for 3 s
    const [a, b] = await twoHeads({ workerTokenFailures: 2, workerBanMs: 3_000 });
    await eventually(async () => (await metric(b, "coordinator_nats_connected")) === 1, "b to reach NATS", DEADLINE_MS);

    // When 127.0.0.1 sends head a wrong tokens until it is banned
    expect(await join(a, WRONG)).toBe(CloseCode.unauthorized);
    expect(await join(a, WRONG)).toBe(CloseCode.unauthorized);
    const bannedAt = Date.now();

    // Then head b turns it away too, with the right token, while another address still joins b
    await eventually(async () => (await join(b, TEST_TOKEN)) === CloseCode.tryAgainLater, "b to turn the address away", DEADLINE_MS);
    expect(peers.at(-1)?.received).toEqual([]);
    expect(await join(b, TEST_TOKEN, "127.0.0.2")).toBe("welcomed");
    expect(await metric(b, "coordinator_worker_auth_banned_refusals_total")).toBeGreaterThanOrEqual(1);
    expect(await metric(b, "coordinator_worker_auth_bans_total")).toBe(0);

    // And once the ban is over, b lets it in again
    await eventually(async () => (await join(b, TEST_TOKEN)) === "welcomed", "b to let the address in again", DEADLINE_MS);
    expect(Date.now() - bannedAt).toBeGreaterThanOrEqual(2_900);

    // And nothing is left once the peers, the heads and nats-server are gone
    for (const peer of peers.splice(0)) peer.socket.terminate();
    for (const coordinator of coordinators.splice(0)) await coordinator.close();
    await nats?.stop();
    nats = undefined;
    const tracked = resources as TrackedResources;
    await settled(tracked);
    expect(tracked.summary()).toBe("");
  }, 30_000);
});
