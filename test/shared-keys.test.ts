// Keys added at run time reach every head through the `coordinator-keys` bucket (docs/scaling.md §7), with a real
// nats-server: a key added on one head works on the other and a revoked one stops there too, the bucket holds digests
// only, a head that has not read the bucket yet never serves an API the cluster closed, and writes wait for NATS.
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { afterEach, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import { KEYS_BUCKET, keyDigest, keyId, type RuntimeKey } from "../src/api/key-ring.js";
import type { ServeConfig } from "../src/config.js";
import { eventually, startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";
import { type NatsServer, startNatsServer, stopHeads } from "./support/nats.js";
import { settled, trackResources, type TrackedResources } from "./support/resources.js";

/** A watch delivers a change in milliseconds; a reconnect takes up to a second or two. */
const DEADLINE_MS = 15_000;
const FLAG_ADMIN = "admin-key-on-every-head";

interface Answer {
  status: number;
  body: { error?: { code?: string }; [field: string]: unknown };
}

async function api(head: RunningCoordinator, path: string, init: { method?: string; body?: unknown; key?: string } = {}): Promise<Answer> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (init.key !== undefined) headers.authorization = `Bearer ${init.key}`;
  const response = await fetch(`${head.url}${path}`, {
    method: init.method ?? "GET",
    headers,
    ...(init.body !== undefined && { body: JSON.stringify(init.body) }),
  });
  return { status: response.status, body: (await response.json()) as Answer["body"] };
}

async function addKey(head: RunningCoordinator, kind: "client" | "admin", key?: string): Promise<{ id: string; key: string }> {
  const answer = await api(head, "/v1/keys", { method: "POST", body: { kind }, ...(key !== undefined && { key }) });
  expect(answer.status, JSON.stringify(answer.body)).toBe(201);
  return answer.body as unknown as { id: string; key: string };
}

/** The status `/v1/models` answers `key` (or no key) with on `head`. */
async function modelsStatus(head: RunningCoordinator, key?: string): Promise<number> {
  return (await api(head, "/v1/models", key === undefined ? {} : { key })).status;
}

describe("keys added at run time, across heads", () => {
  let nats: NatsServer | undefined;
  let resources: TrackedResources | undefined;
  const coordinators: RunningCoordinator[] = [];
  const workers: TestWorker[] = [];

  afterEach(async () => {
    await stopHeads(workers, coordinators, nats);
    resources?.stop();
    nats = resources = undefined;
  });

  async function head(name: string, overrides: Partial<ServeConfig> = {}): Promise<RunningCoordinator> {
    const coordinator = await startTestCoordinator({ nats: [(nats as NatsServer).url], headName: name, ...overrides });
    coordinators.push(coordinator);
    workers.push(await startSimWorker(coordinator, { tokensPerSecond: 0 }));
    return coordinator;
  }

  async function ready(coordinator: RunningCoordinator): Promise<boolean> {
    return (await fetch(`${coordinator.url}/ready`)).status === 200;
  }

  it("take a key added on one head on the other, refuse it there once revoked, and keep only its digest; nothing is left", { timeout: 60_000 }, async () => {
    // Given two heads on one nats-server, both with the same admin key from their flags
    resources = trackResources();
    nats = await startNatsServer();
    const a = await head("a", { adminKey: [FLAG_ADMIN] });
    const b = await head("b", { adminKey: [FLAG_ADMIN] });
    await eventually(async () => (await ready(a)) && (await ready(b)), "both heads to read the keys", DEADLINE_MS);

    // When a client key is added on a
    const client = await addKey(a, "client", FLAG_ADMIN);

    // Then b takes it within moments, and lists it
    await eventually(async () => (await modelsStatus(b, client.key)) === 200, "b to take the key added on a", DEADLINE_MS);
    const listed = await api(b, "/v1/keys", { key: FLAG_ADMIN });
    expect(listed.body.data).toEqual([expect.objectContaining({ id: client.id, kind: "client" })]);

    // And an admin key added on b manages keys on a
    const admin = await addKey(b, "admin", FLAG_ADMIN);
    await eventually(async () => (await api(a, "/v1/keys", { key: admin.key })).status === 200, "a to take b's admin key", DEADLINE_MS);

    // And the bucket holds each key's digest, never the key
    const connection = await connect({ servers: (nats as NatsServer).url });
    try {
      const bucket = await new Kvm(connection).open(KEYS_BUCKET);
      const stored: string[] = [];
      for await (const key of await bucket.keys()) stored.push(key);
      expect(stored.sort()).toEqual([keyDigest(client.key), keyDigest(admin.key)].sort());
      for (const key of stored) {
        const text = (await bucket.get(key))?.string() ?? "";
        expect(text).not.toContain(client.key);
        expect(text).not.toContain(admin.key);
        expect((JSON.parse(text) as RuntimeKey).id).toBe(keyId(key));
      }
    } finally {
      await connection.close();
    }

    // When the client key is revoked on a
    expect((await api(a, `/v1/keys/${client.id}`, { method: "DELETE", key: admin.key })).status).toBe(200);

    // Then a refuses it at once, and b within moments
    expect(await modelsStatus(a, client.key)).toBe(401);
    await eventually(async () => (await modelsStatus(b, client.key)) === 401, "b to refuse the key revoked on a", DEADLINE_MS);
    expect(await api(b, `/v1/keys/${client.id}`, { method: "DELETE", key: FLAG_ADMIN })).toMatchObject({ status: 404 });

    // And once everything is closed, nothing of either head is left
    for (const worker of workers.splice(0)) await worker.stop();
    for (const coordinator of coordinators.splice(0)) await coordinator.close();
    await nats.stop();
    nats = undefined;
    await settled(resources);
    expect(resources.summary()).toBe("");
  });

  it("keep a head that starts while NATS is down from serving the API the cluster closed, until it has read the keys", { timeout: 60_000 }, async () => {
    // Given a cluster whose first admin key, added at run time, closed its API
    nats = await startNatsServer();
    const a = await head("a");
    await eventually(() => ready(a), "a to read the keys", DEADLINE_MS);
    const admin = await addKey(a, "admin");
    expect(await modelsStatus(a)).toBe(401);

    // When nats-server is down and a head with no key of its own starts
    await nats.kill();
    const b = await head("b");

    // Then it is not ready, and answers every guarded route (and the admin ones) with 503, not as an open API
    const readiness = await fetch(`${b.url}/ready`);
    expect(readiness.status).toBe(503);
    expect(await readiness.json()).toMatchObject({ status: "not_ready", keys: "unavailable", nats: "disconnected" });
    for (const path of ["/v1/models", "/v1/cluster", "/v1/keys", "/v1/placements"]) {
      expect(await api(b, path), path).toMatchObject({ status: 503, body: { error: { type: "server_error", code: "keys_unavailable" } } });
    }
    const anthropic = await fetch(`${b.url}/v1/messages`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    expect(anthropic.status).toBe(503);
    expect(await anthropic.json()).toMatchObject({ type: "error", error: { type: "api_error" } });
    expect((await fetch(`${b.url}/health`)).status).toBe(200);

    // And the head that had read the keys keeps them through the outage, but cannot write
    await eventually(async () => (await api(a, "/ready")).body.nats === "disconnected", "a to notice NATS is gone", DEADLINE_MS);
    const refused = await api(a, "/v1/keys", { method: "POST", body: { kind: "admin" }, key: admin.key });
    expect(refused).toMatchObject({ status: 503, body: { error: { code: "nats_unavailable" } } });
    expect(await modelsStatus(a)).toBe(401);
    expect(await modelsStatus(a, admin.key)).toBe(200);

    // When nats-server comes back
    await nats.restart();

    // Then b reads the keys, is ready, and is closed like the rest of the cluster
    await eventually(() => ready(b), "b to read the keys", DEADLINE_MS);
    expect(await modelsStatus(b)).toBe(401);
    expect(await modelsStatus(b, admin.key)).toBe(200);
    await eventually(async () => (await api(a, `/v1/keys`, { key: admin.key })).status === 200 && (await ready(a)), "a to be back", DEADLINE_MS);
  });

  it("ignore an entry of the bucket that does not parse, and take a valid one written by hand", { timeout: 60_000 }, async () => {
    nats = await startNatsServer();
    const a = await head("a", { adminKey: [FLAG_ADMIN] });
    await eventually(() => ready(a), "a to read the keys", DEADLINE_MS);
    const connection = await connect({ servers: nats.url });
    try {
      const bucket = await new Kvm(connection).open(KEYS_BUCKET);
      const garbage = keyDigest("sk-coord-garbage");
      const wrongShape = keyDigest("sk-coord-wrong-shape");
      const good = keyDigest("sk-coord-written-by-hand");
      await bucket.put(garbage, "not json");
      await bucket.put(wrongShape, JSON.stringify({ v: 2, id: keyId(wrongShape), kind: "admin" }));
      const entry: RuntimeKey = { v: 1, id: keyId(good), kind: "client", label: "by hand", createdAt: Date.now() };
      await bucket.put(good, JSON.stringify(entry));

      // The watch delivers in order: once the valid one works, the others were seen and ignored
      await eventually(async () => (await modelsStatus(a, "sk-coord-written-by-hand")) === 200, "a to take the valid entry", DEADLINE_MS);
      expect(await modelsStatus(a, "sk-coord-garbage")).toBe(401);
      expect(await modelsStatus(a, "sk-coord-wrong-shape")).toBe(401);
      expect((await api(a, "/v1/keys", { key: FLAG_ADMIN })).body.data).toEqual([expect.objectContaining({ id: keyId(good), label: "by hand" })]);
    } finally {
      await connection.close();
    }
  });
});
