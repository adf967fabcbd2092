// Keys added and revoked at run time through /v1/keys, on one head (docs/api.md, "Keys added at run time"): a new key
// works at once on every guarded route and stops at once when revoked, only admin keys manage keys, and the rules that
// keep admin routes reachable hold. Real coordinator, real HTTP, the openai SDK.
import OpenAI from "openai";
import { afterEach, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import type { ServeConfig } from "../src/config.js";
import { startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";

const FLAG_ADMIN = "admin-key-from-flag";
const FLAG_CLIENT = "client-key-from-flag";

interface Answer {
  status: number;
  body: Record<string, unknown> & { error?: Record<string, unknown> };
}

interface KeyCreated {
  object: string;
  id: string;
  kind: string;
  label: string | null;
  key: string;
  created_at: number;
}

describe("keys added at run time, one head", () => {
  let coordinator: RunningCoordinator | undefined;
  let worker: TestWorker | undefined;

  afterEach(async () => {
    await worker?.stop();
    await coordinator?.close();
    coordinator = worker = undefined;
  });

  async function start(overrides: Partial<ServeConfig>): Promise<RunningCoordinator> {
    coordinator = await startTestCoordinator(overrides);
    worker = await startSimWorker(coordinator, { tokensPerSecond: 0 });
    return coordinator;
  }

  async function api(path: string, init: { method?: string; body?: unknown; key?: string } = {}): Promise<Answer> {
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (init.key !== undefined) headers.authorization = `Bearer ${init.key}`;
    const response = await fetch(`${coordinator?.url}${path}`, {
      method: init.method ?? "GET",
      headers,
      ...(init.body !== undefined && { body: JSON.stringify(init.body) }),
      signal: AbortSignal.timeout(10_000),
    });
    return { status: response.status, body: (await response.json()) as Answer["body"] };
  }

  async function addKey(kind: "client" | "admin", key: string | undefined, label?: string): Promise<KeyCreated> {
    const answer = await api("/v1/keys", { method: "POST", body: { kind, ...(label !== undefined && { label }) }, ...(key !== undefined && { key }) });
    expect(answer.status, JSON.stringify(answer.body)).toBe(201);
    return answer.body as unknown as KeyCreated;
  }

  function sdk(key: string): OpenAI {
    return new OpenAI({ baseURL: `${coordinator?.url}/v1`, apiKey: key, maxRetries: 0, timeout: 20_000 });
  }

  it("adds a client key that works at once, lists it without the key, and refuses it at once once revoked", async () => {
    // Given a coordinator with an admin key from its flags
    await start({ adminKey: [FLAG_ADMIN] });

    // When an admin adds a client key
    const created = await addKey("client", FLAG_ADMIN, "ci runner");

    // Then the answer shows it once, with its id and label
    expect(created).toEqual({
      object: "api_key",
      id: expect.stringMatching(/^key_[0-9a-f]{16}$/),
      kind: "client",
      label: "ci runner",
      key: expect.stringMatching(/^sk-coord-[A-Za-z0-9_-]{43}$/),
      created_at: expect.any(Number),
    });
    expect(Math.abs(created.created_at - Date.now() / 1000)).toBeLessThan(60);

    // And it completes a chat and lists models through the openai SDK, and calls /v1/messages with x-api-key
    const completion = await sdk(created.key).chat.completions.create({ model: "simulator", messages: [{ role: "user", content: "new key" }] });
    expect(completion.choices[0]?.finish_reason).toBe("stop");
    expect((await sdk(created.key).models.list()).data.map((m) => m.id)).toEqual(["simulator"]);
    const messages = await fetch(`${coordinator?.url}/v1/messages`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": created.key },
      body: JSON.stringify({ model: "simulator", max_tokens: 16, messages: [{ role: "user", content: "hi" }] }),
    });
    expect(messages.status).toBe(200);
    await messages.body?.cancel();

    // And the list shows it without the key or anything derived from it but the id
    const listed = await api("/v1/keys", { key: FLAG_ADMIN });
    expect(listed).toEqual({
      status: 200,
      body: {
        object: "list",
        data: [{ object: "api_key", id: created.id, kind: "client", label: "ci runner", created_at: created.created_at }],
        configured: { client: 0, admin: 1 },
      },
    });
    expect(JSON.stringify(listed.body)).not.toContain(created.key.slice("sk-coord-".length, 20));

    // When it is revoked
    const deleted = await api(`/v1/keys/${created.id}`, { method: "DELETE", key: FLAG_ADMIN });
    expect(deleted).toEqual({ status: 200, body: { object: "api_key", id: created.id, deleted: true } });

    // Then it is refused at once, and no longer listed
    await expect(sdk(created.key).models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError);
    expect(await api("/v1/models", { key: created.key })).toMatchObject({ status: 401, body: { error: { code: "invalid_api_key" } } });
    expect((await api("/v1/keys", { key: FLAG_ADMIN })).body.data).toEqual([]);

    // And revoking it again is a 404
    expect(await api(`/v1/keys/${created.id}`, { method: "DELETE", key: FLAG_ADMIN })).toMatchObject({
      status: 404,
      body: { error: { type: "invalid_request_error", code: "key_not_found", param: "id" } },
    });
  });

  it("lets an admin key added at run time call admin routes, and no client key manage keys", async () => {
    await start({ adminKey: [FLAG_ADMIN], apiKey: [FLAG_CLIENT] });
    const admin = await addKey("admin", FLAG_ADMIN);
    const client = await addKey("client", admin.key);

    expect((await api("/v1/placements", { key: admin.key })).status).toBe(200);
    expect((await api("/v1/keys", { key: admin.key })).status).toBe(200);
    expect((await sdk(admin.key).models.list()).data).toHaveLength(1);

    for (const key of [client.key, FLAG_CLIENT]) {
      for (const [path, method] of [["/v1/keys", "GET"], ["/v1/keys", "POST"], [`/v1/keys/${admin.id}`, "DELETE"]] as const) {
        const answer = await api(path, { method, key, ...(method === "POST" && { body: { kind: "admin" } }) });
        expect(answer, `${method} ${path}`).toMatchObject({ status: 403, body: { error: { type: "permission_error", code: "admin_key_required" } } });
      }
    }
    expect(await api("/v1/keys", { method: "POST", body: { kind: "admin" } })).toMatchObject({ status: 401, body: { error: { code: "missing_api_key" } } });
    expect(await api("/v1/keys", { key: "sk-coord-guessed-key" })).toMatchObject({ status: 401, body: { error: { code: "invalid_api_key" } } });
    expect((await api("/v1/keys", { key: FLAG_ADMIN })).body.data).toHaveLength(2);
  });

  it("refuses a body it does not take with a 400 naming the parameter", async () => {
    await start({ adminKey: [FLAG_ADMIN] });
    const cases: Array<[unknown, string, string | null]> = [
      [{ kind: "root" }, "kind", null],
      [{}, "kind", null],
      [{ kind: "client", scope: "all" }, "scope", "unsupported_parameter"],
      [{ kind: "client", label: "x".repeat(129) }, "label", null],
      [{ kind: "client", label: 7 }, "label", null],
      [["client"], "", null],
    ];
    for (const [body, param, code] of cases) {
      const answer = await api("/v1/keys", { method: "POST", body, key: FLAG_ADMIN });
      expect(answer.status, JSON.stringify(body)).toBe(400);
      expect(answer.body.error, JSON.stringify(body)).toMatchObject({ type: "invalid_request_error", code });
      if (param) expect(answer.body.error?.param, JSON.stringify(body)).toBe(param);
    }
    // A label of exactly 128 characters is fine
    expect((await addKey("client", FLAG_ADMIN, "y".repeat(128))).label).toHaveLength(128);

    const notJson = await fetch(`${coordinator?.url}/v1/keys`, { method: "POST", headers: { authorization: `Bearer ${FLAG_ADMIN}` }, body: "kind=client" });
    expect(notJson.status).toBe(415);
    const put = await fetch(`${coordinator?.url}/v1/keys`, { method: "PUT", headers: { authorization: `Bearer ${FLAG_ADMIN}`, "content-type": "application/json" }, body: "{}" });
    expect(put.status).toBe(405);
    expect(put.headers.get("allow")).toBe("GET, HEAD, POST");
  });

  it("closes an open coordinator once its first admin key is added, and refuses a client key before any admin key", async () => {
    // Given a coordinator with no key at all: open
    await start({});
    expect((await api("/v1/models")).status).toBe(200);
    expect((await api("/v1/keys")).body).toMatchObject({ data: [], configured: { client: 0, admin: 0 } });

    // When a client key is asked for first, it is refused: admin routes would be off for good
    const clientFirst = await api("/v1/keys", { method: "POST", body: { kind: "client" } });
    expect(clientFirst).toMatchObject({ status: 409, body: { error: { code: "admin_key_first", param: "kind", type: "invalid_request_error" } } });
    expect((await api("/v1/models")).status).toBe(200);

    // When the first admin key is added
    const admin = await addKey("admin", undefined, "first");

    // Then every guarded route needs a key, and that one opens them
    expect(await api("/v1/models")).toMatchObject({ status: 401, body: { error: { code: "missing_api_key" } } });
    expect(await api("/v1/keys")).toMatchObject({ status: 401 });
    expect((await sdk(admin.key).models.list()).data).toHaveLength(1);
    const client = await addKey("client", admin.key);
    expect((await api("/v1/models", { key: client.key })).status).toBe(200);

    // And the last admin key may not go while a client key remains
    const lastAdmin = await api(`/v1/keys/${admin.id}`, { method: "DELETE", key: admin.key });
    expect(lastAdmin).toMatchObject({ status: 409, body: { error: { code: "last_admin_key", param: "id" } } });
    expect((await api("/v1/models", { key: admin.key })).status).toBe(200);

    // But once the client key is gone it may, and the coordinator is open again
    expect((await api(`/v1/keys/${client.id}`, { method: "DELETE", key: admin.key })).status).toBe(200);
    expect((await api(`/v1/keys/${admin.id}`, { method: "DELETE", key: admin.key })).status).toBe(200);
    expect((await api("/v1/models")).status).toBe(200);
  });

  it("revokes the last runtime admin key while client keys remain when flags still give an admin key", async () => {
    await start({ adminKey: [FLAG_ADMIN], apiKey: [FLAG_CLIENT] });
    const admin = await addKey("admin", FLAG_ADMIN);
    expect((await api(`/v1/keys/${admin.id}`, { method: "DELETE", key: admin.key })).status).toBe(200);
    expect(await api("/v1/models", { key: admin.key })).toMatchObject({ status: 401, body: { error: { code: "invalid_api_key" } } });
    expect((await api("/v1/keys", { key: FLAG_ADMIN })).body).toMatchObject({ data: [], configured: { client: 1, admin: 1 } });
  });

  it("keeps admin routes off with client keys from flags and no admin key", async () => {
    await start({ apiKey: [FLAG_CLIENT] });
    const answer = await api("/v1/keys", { method: "POST", body: { kind: "admin" }, key: FLAG_CLIENT });
    expect(answer).toMatchObject({ status: 403, body: { error: { code: "admin_disabled" } } });
  });
});
