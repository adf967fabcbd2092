// POST /v1/models/pull end to end: the test GGUF served by a local HTTP server (one that drops the connection
// halfway, too) lands in a worker's models dir, shows up in its library, and a request for it is answered.
import { createHash } from "node:crypto";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import { buildScriptedModel } from "../src/worker/engines/gguf/scripted-model.js";
import OpenAI from "openai";
import { eventually, startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";
import { type FileServer, startFileServer } from "./support/file-server.js";

let coordinator: RunningCoordinator | undefined;
let worker: TestWorker | undefined;
let server: FileServer | undefined;
let dir: string | undefined;

afterEach(async () => {
  await worker?.stop();
  await coordinator?.close();
  await server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
  worker = coordinator = server = dir = undefined;
});

async function admin(path: string, init: RequestInit = {}): Promise<{ status: number; body: { data?: Array<Record<string, unknown>>; error?: Record<string, unknown> } }> {
  if (!coordinator) throw new Error("no coordinator");
  const response = await fetch(`${coordinator.url}${path}`, { ...init, headers: { "content-type": "application/json", authorization: "Bearer admin-key-0123" } });
  return { status: response.status, body: (await response.json()) as { data?: Array<Record<string, unknown>> } };
}

async function setUp(): Promise<{ bytes: Buffer; sha256: string }> {
  // A larger test model (8 MB): a cut halfway leaves bytes on disk to resume from.
  const bytes = Buffer.from(buildScriptedModel({ layers: 4, width: 256 }).bytes);
  server = await startFileServer(bytes);
  dir = await mkdtemp(path.join(tmpdir(), "pull-e2e-"));
  coordinator = await startTestCoordinator({ adminKey: ["admin-key-0123"] });
  worker = await startSimWorker(coordinator, { library: [], memoryBytes: 8 * 2 ** 30, modelsDir: dir, libraryScanMs: 60_000, name: "puller" });
  return { bytes, sha256: createHash("sha256").update(bytes).digest("hex") };
}

async function pulled(id: string): Promise<Record<string, unknown>> {
  let pull: Record<string, unknown> | undefined;
  await eventually(async () => {
    pull = (await admin("/v1/models/pulls")).body.data?.find((p) => p.id === id);
    return pull?.state !== "downloading";
  }, "the pull ended");
  return pull ?? {};
}

describe("POST /v1/models/pull", () => {
  it("downloads the file onto the worker, resuming after a dropped connection, and the model answers at once", async () => {
    const { bytes, sha256 } = await setUp();
    if (!server || !coordinator || !dir) throw new Error("not set up");
    server.cutAfter = Math.floor(bytes.length / 2);
    server.cuts = 1;
    const started = await admin("/v1/models/pull", { method: "POST", body: JSON.stringify({ url: `${server.origin}/org/test/resolve/main/pulled.gguf`, sha256 }) });
    expect(started.status).toBe(202);
    expect(started.body.data).toMatchObject([{ worker: { name: "puller" }, state: "downloading" }]);

    const pull = await pulled(started.body.data?.[0]?.id as string);
    expect(pull).toMatchObject({ state: "done", file_name: "pulled.gguf", received_bytes: bytes.length, sha256, error: null });
    // The second request resumed where the first was cut (or before: bytes in flight when it dropped are lost).
    const resumedAt = server.requests.map((r) => /^bytes=(\d+)-$/.exec(String(r.headers.range ?? ""))?.[1]).find((at) => at !== undefined);
    expect(Number(resumedAt)).toBeGreaterThan(0);
    expect(Number(resumedAt)).toBeLessThanOrEqual(Math.floor(bytes.length / 2));
    expect(await readdir(dir)).toEqual(["pulled.gguf"]);

    // The worker rescans once the file is whole: the model is offered and loads on demand.
    await eventually(() => coordinator?.master.knowsModel("pulled") === true, "the pulled model is offered");
    const client = new OpenAI({ baseURL: `${coordinator.url}/v1`, apiKey: "admin-key-0123", maxRetries: 0 });
    const reply = await client.chat.completions.create({ model: "pulled", messages: [{ role: "user", content: "hi" }] });
    expect(reply.choices[0]?.message.content).toContain("simulated");
  });

  it("reports a checksum mismatch as a failed pull and leaves no file", async () => {
    await setUp();
    if (!server || !dir) throw new Error("not set up");
    const started = await admin("/v1/models/pull", { method: "POST", body: JSON.stringify({ url: `${server.origin}/files/wrong.gguf`, sha256: "0".repeat(64), workers: ["puller"] }) });
    expect(started.status).toBe(202);
    const pull = await pulled(started.body.data?.[0]?.id as string);
    expect(pull).toMatchObject({ state: "failed", error: { code: "checksum_mismatch" } });
    expect(await readdir(dir)).toEqual([]);
  });

  it("refuses bad requests: no URL scheme, an unknown worker, a client key", async () => {
    await setUp();
    expect((await admin("/v1/models/pull", { method: "POST", body: JSON.stringify({ url: "file:///etc/passwd" }) })).status).toBe(400);
    expect((await admin("/v1/models/pull", { method: "POST", body: JSON.stringify({ url: "http://x/y.gguf", workers: ["nobody"] }) })).status).toBe(404);
    const typo = await admin("/v1/models/pull", { method: "POST", body: JSON.stringify({ url: "http://x/y.gguf", sha: "00" }) });
    expect(typo).toMatchObject({ status: 400, body: { error: { code: "unsupported_parameter", param: "sha" } } });
    if (!coordinator) throw new Error("no coordinator");
    const anonymous = await fetch(`${coordinator.url}/v1/models/pull`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    expect(anonymous.status).toBe(401);
  });
});
