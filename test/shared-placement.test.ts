// Placement decided once for several heads (docs/scaling.md §6): heads on one nats-server elect one planner through
// the lease; a placement sent to any head is decided by the planner, kept in the shared store, shown and obeyed by
// every head; a request on another head for a model nobody serves is loaded by the planner, and its keep_alive
// reaches the planner; when the planner goes, another head takes the lease, and a planner paused past its lease
// (SIGSTOP) comes back as a follower. A pull started through one head is listed by every head.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import type { HeadView } from "../src/heads/heads.js";
import type { ServeConfig } from "../src/config.js";
import { buildScriptedModel } from "../src/worker/engines/gguf/scripted-model.js";
import { eventually, openaiClient, startSimWorker, startTestCoordinator, TEST_TOKEN, type TestWorker } from "./support/cluster.js";
import { startFileServer } from "./support/file-server.js";
import { keysRead, type NatsServer, startNatsServer, stopHeads } from "./support/nats.js";
import { type CliProcess, spawnCli } from "./support/processes.js";
import { settled, trackResources, type TrackedResources } from "./support/resources.js";

const GiB = 2 ** 30;
/** Short, so that handovers in these tests take seconds (the default is 10 s). */
const LEASE_MS = 2_000;
const DEADLINE_MS = 20_000;

interface PlacementObject {
  id: string;
  model: string;
  instances: Array<{ worker: { name: string }; state: string }>;
}

async function headsOf(url: string): Promise<HeadView[]> {
  return ((await (await fetch(`${url}/v1/cluster`)).json()) as { heads: HeadView[] }).heads;
}

async function placementsOf(coordinator: RunningCoordinator): Promise<PlacementObject[]> {
  return ((await (await fetch(`${coordinator.url}/v1/placements`)).json()) as { data: PlacementObject[] }).data;
}

async function send(url: string, method: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(url, { method, headers: { "content-type": "application/json" }, ...(body !== undefined && { body: JSON.stringify(body) }) });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function ask(coordinator: RunningCoordinator, model: string): Promise<string> {
  const reply = await openaiClient(coordinator).chat.completions.create({ model, messages: [{ role: "user", content: "hello" }] });
  return reply.choices[0]?.message.content ?? "";
}

describe("placement across heads", () => {
  let nats: NatsServer | undefined;
  let resources: TrackedResources | undefined;
  const coordinators: RunningCoordinator[] = [];
  let worker: TestWorker | undefined;
  let child: CliProcess | undefined;

  afterEach(async () => {
    if (child?.child.exitCode === null) {
      child.child.kill("SIGCONT");
      child.child.kill("SIGKILL");
      await child.exited;
    }
    await stopHeads(worker ? [worker] : [], coordinators, nats);
    resources?.stop();
    worker = nats = resources = child = undefined;
  });

  async function head(name: string, overrides: Partial<ServeConfig> = {}): Promise<RunningCoordinator> {
    const coordinator = await startTestCoordinator({ nats: [nats?.url ?? ""], headName: name, natsLeaseMs: LEASE_MS, ...overrides });
    coordinators.push(coordinator);
    await keysRead(coordinator.url);
    return coordinator;
  }

  /** The head of `among` that runs the planner, once exactly one says it does and every one agrees. */
  async function planner(among: RunningCoordinator[]): Promise<RunningCoordinator> {
    let found: RunningCoordinator | undefined;
    await eventually(async () => {
      const leading = among.filter((c) => c.master.planning.leading);
      if (leading.length !== 1) return false;
      found = leading[0];
      const views = await Promise.all(among.map((c) => headsOf(c.url)));
      return views.every((heads) => heads.filter((h) => h.planner).length === 1 && heads.find((h) => h.planner)?.url === found?.url);
    }, "one planner that every head knows", DEADLINE_MS);
    return found as RunningCoordinator;
  }

  it("decides a placement sent to any head once, and every head shows and obeys it; nothing is left after", async () => {
    // Given two heads that load nothing on their own, and a worker with a library joined to both
    resources = trackResources();
    nats = await startNatsServer();
    const a = await head("a", { noAutoLoad: true });
    const b = await head("b", { noAutoLoad: true });
    worker = await startSimWorker({ workerUrl: `${a.workerUrl},${b.workerUrl}` }, { name: "w", library: [{ id: "big", sizeBytes: 2 * GiB, loadMs: 100 }], memoryBytes: 8 * GiB });
    await eventually(() => a.master.workerCount === 1 && b.master.workerCount === 1, "the worker on both heads");
    const leader = await planner([a, b]);
    const follower = leader === a ? b : a;

    // When an admin places the model through the head that does not plan
    const placed = await send(`${follower.url}/v1/placements`, "POST", { model: "big" });

    // Then the planner decided it (one instance, on the worker), and every head shows it loaded
    expect(placed.status).toBe(201);
    expect(placed.body).toMatchObject({ object: "placement", model: "big", instances: [{ worker: { name: "w" } }] });
    for (const coordinator of [a, b]) {
      await eventually(async () => (await placementsOf(coordinator)).some((p) => p.id === placed.body.id && p.instances[0]?.state === "loaded"), "the placement loaded, on each head", DEADLINE_MS);
    }
    expect(worker.engine.library?.isLoaded("big")).toBe(true);
    // And requests through either head are served by it
    expect(await ask(follower, "big")).not.toBe("");
    expect(await ask(leader, "big")).not.toBe("");
    // And both heads count it pinned: neither lets an admin unload it
    const unload = await send(`${follower.url}/v1/models/unload`, "POST", { model: "big", worker: "w" });
    expect(unload.status).toBe(409);

    // When the placement is deleted through the follower
    const deleted = await send(`${follower.url}/v1/placements/${String(placed.body.id)}`, "DELETE");

    // Then the planner unloads it, and no head lists it any more
    expect(deleted).toMatchObject({ status: 200, body: { deleted: true } });
    await eventually(() => worker?.engine.library?.isLoaded("big") === false, "the model unloaded", DEADLINE_MS);
    for (const coordinator of [a, b]) await eventually(async () => (await placementsOf(coordinator)).length === 0, "no placement left");

    // And an unknown placement or model is answered by the planner, through the follower, in the route's words
    expect((await send(`${follower.url}/v1/placements/placement-nope`, "DELETE")).status).toBe(404);
    expect((await send(`${follower.url}/v1/placements`, "POST", { model: "nope" })).status).toBe(404);
    expect((await send(`${follower.url}/v1/placements`, "POST", { model: "big", extra: 1 })).status).toBe(400);

    // And once everything is closed, nothing of either head is left
    await worker.stop();
    worker = undefined;
    for (const coordinator of coordinators.splice(0)) await coordinator.close();
    await nats.stop();
    nats = undefined;
    await settled(resources);
    expect(resources.summary()).toBe("");
  }, 90_000);

  it("loads a model a request on another head waits for, and hands the planner over when its head stops", async () => {
    nats = await startNatsServer();
    const a = await head("a");
    const b = await head("b");
    worker = await startSimWorker({ workerUrl: `${a.workerUrl},${b.workerUrl}` }, { name: "w", library: [{ id: "small", sizeBytes: 1 * GiB, loadMs: 200 }, { id: "other", sizeBytes: 1 * GiB, loadMs: 50 }], memoryBytes: 8 * GiB });
    await eventually(() => a.master.workerCount === 1 && b.master.workerCount === 1, "the worker on both heads");
    const leader = await planner([a, b]);
    const follower = leader === a ? b : a;

    // When a request on the follower asks for a model nobody serves, it is loaded by the planner and answered
    expect(await ask(follower, "small")).not.toBe("");
    expect(worker.engine.library?.isLoaded("small")).toBe(true);
    // And Ollama's keep_alive 0 on the follower has the planner unload it at once
    expect((await send(`${follower.url}/api/chat`, "POST", { model: "small", messages: [], keep_alive: 0 })).status).toBe(200);
    await eventually(() => worker?.engine.library?.isLoaded("small") === false, "small unloaded at once", DEADLINE_MS);

    // When the planner's head stops, the other takes the lease at once (it was given back), and plans from then on
    coordinators.splice(coordinators.indexOf(leader), 1);
    await leader.close();
    expect(await planner([follower])).toBe(follower);
    expect(await ask(follower, "other")).not.toBe("");
    const placed = await send(`${follower.url}/v1/placements`, "POST", { model: "small" });
    expect(placed.status).toBe(201);
    await eventually(() => worker?.engine.library?.isLoaded("small") === true, "small placed", DEADLINE_MS);
  }, 90_000);

  it("keeps a model loaded as long as a request on another head's keep_alive asks, and unloads the others when idle", async () => {
    // Given two heads that unload a model idle for 300 ms, and a worker with two models joined to both
    nats = await startNatsServer();
    const a = await head("a", { modelIdleMs: 300 });
    const b = await head("b", { modelIdleMs: 300 });
    const library = [{ id: "kept", sizeBytes: GiB, loadMs: 0 }, { id: "brief", sizeBytes: GiB, loadMs: 0 }];
    worker = await startSimWorker({ workerUrl: `${a.workerUrl},${b.workerUrl}` }, { name: "w", library, memoryBytes: 8 * GiB });
    await eventually(() => a.master.workerCount === 1 && b.master.workerCount === 1, "the worker on both heads");
    const follower = (await planner([a, b])) === a ? b : a;

    // When the follower's clients ask for one model with keep_alive -1 (Ollama's "for ever") and another without
    const chat = (model: string, extra: Record<string, unknown>) => send(`${follower.url}/api/chat`, "POST", { model, messages: [{ role: "user", content: "hi" }], stream: false, ...extra });
    expect((await chat("kept", { keep_alive: -1 })).status).toBe(200);
    expect((await chat("brief", {})).status).toBe(200);

    // Then the planner unloads the idle one, and keeps the one asked for ever
    await eventually(() => worker?.engine.library?.isLoaded("brief") === false, "brief unloaded once idle", DEADLINE_MS);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(worker.engine.library?.isLoaded("kept")).toBe(true);
  }, 60_000);

  it("lists a pull on every head, the one that started it or not", async () => {
    // Given two heads, and a worker with a models dir joined to both
    nats = await startNatsServer();
    const a = await head("a");
    const b = await head("b");
    const server = await startFileServer(Buffer.from(buildScriptedModel({ layers: 2, width: 64 }).bytes));
    const dir = await mkdtemp(join(tmpdir(), "shared-pull-"));
    try {
      worker = await startSimWorker({ workerUrl: `${a.workerUrl},${b.workerUrl}` }, { name: "w", library: [], memoryBytes: 8 * GiB, modelsDir: dir, libraryScanMs: 60_000 });
      await eventually(() => a.master.workerCount === 1 && b.master.workerCount === 1, "the worker on both heads");

      // When a pull is started through a
      const started = await send(`${a.url}/v1/models/pull`, "POST", { url: `${server.origin}/tiny.gguf`, file_name: "tiny.gguf" });
      expect(started.status).toBe(202);
      const id = (started.body.data as Array<{ id: string }>)[0]?.id;

      // Then b lists it too, with its URL and file name, done once the worker says so
      const listed = async (on: RunningCoordinator) => ((await (await fetch(`${on.url}/v1/models/pulls`)).json()) as { data: Array<Record<string, unknown>> }).data.find((p) => p.id === id);
      await eventually(async () => (await listed(b))?.state === "done" && (await listed(a))?.state === "done", "the pull done on both heads", DEADLINE_MS);
      expect(await listed(b)).toMatchObject({ worker: { name: "w" }, url: `${server.origin}/tiny.gguf`, file_name: "tiny.gguf", state: "done" });
    } finally {
      await worker?.stop();
      worker = undefined;
      await server.close();
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it("takes the lease from a planner paused past it, which comes back as a follower", async () => {
    // Given a planner in its own process, which starts first, and a second head in this one
    nats = await startNatsServer();
    child = spawnCli(["--host", "127.0.0.1", "--port", "0", "--worker-token", TEST_TOKEN, "--nats", nats.url, "--head-name", "paused", "--nats-lease-ms", String(LEASE_MS), "--log-level", "warn"]);
    const [, api] = await child.waitFor(/API:\s+(http:\/\/\S+)\/v1/);
    await keysRead(api as string);
    await eventually(async () => (await headsOf(api as string))[0]?.planner === true, "the first head leads", DEADLINE_MS);
    const b = await head("b");
    worker = await startSimWorker({ workerUrl: b.workerUrl }, { name: "w", library: [{ id: "small", sizeBytes: 1 * GiB, loadMs: 50 }], memoryBytes: 8 * GiB });
    await eventually(async () => (await headsOf(b.url)).some((h) => h.name === "paused" && h.planner), "b knows who plans", DEADLINE_MS);
    expect(b.master.planning.leading).toBe(false);

    // When the planner is paused for longer than its lease
    child.child.kill("SIGSTOP");

    // Then b takes the lease once it has aged out, and plans (a request for a model nobody serves is loaded)
    await eventually(() => b.master.planning.leading, "b leads", DEADLINE_MS);
    const epoch = b.master.planning.epoch ?? 0;
    expect(epoch).toBeGreaterThan(0);
    expect(await ask(b, "small")).not.toBe("");

    // When the paused head resumes, it finds its lease gone and follows: one planner, b, for every head
    child.child.kill("SIGCONT");
    await eventually(async () => {
      const theirs = await headsOf(api as string);
      return theirs[0]?.planner === false && theirs.some((h) => h.name === "b" && h.planner);
    }, "the resumed head follows b", DEADLINE_MS);
    expect(b.master.planning.leading).toBe(true);
    expect(b.master.planning.epoch).toBe(epoch);
  }, 90_000);
});
