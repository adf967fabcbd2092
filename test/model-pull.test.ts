// Pulling a model file into a worker's models dir from a real local HTTP server: resuming, checking, refusing.
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { type PullProgress, type PullRequest, PullError, pullModel } from "../src/worker/model-pull.js";
import { eventually } from "./support/cluster.js";
import { deterministicBytes, etagOf, type FileServer, startFileServer } from "./support/file-server.js";
import { settled, trackResources } from "./support/resources.js";

const content = deterministicBytes(2 * 1024 * 1024);
const sha256 = sha256Of(content);
const half = content.length / 2;

let root: string;
let models: string;
let server: FileServer;

beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), "model-pull-"));
  models = path.join(root, "models");
  server = await startFileServer(content);
});

afterEach(async () => {
  // Every answer closes its connection: one still open is a body the pull did not read or cancel.
  await eventually(async () => (await server.connections()) === 0, "the pulls' connections to close", 2_000);
  await server.close();
  await rm(root, { recursive: true, force: true });
});

function sha256Of(bytes: Buffer): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Pulls `file` from the server into the models dir, recording every progress report. */
async function pull(file: string, request: Partial<PullRequest> = {}, signal = new AbortController().signal) {
  const reports: PullProgress[] = [];
  const result = await pullModel({ url: `${server.origin}${file}`, dir: models, ...request }, (progress) => reports.push(progress), signal);
  return { result, reports };
}

/** What a pull that must fail rejects with. */
async function pullError(file: string, request: Partial<PullRequest> = {}): Promise<PullError> {
  const error: unknown = await pull(file, request).catch((rejection: unknown) => rejection);
  if (!(error instanceof PullError)) throw new Error(`expected a PullError, got ${String(error)}`);
  return error;
}

/** Waits until the partial of `fileName` holds the first half of the file (all that a stalled answer sends). */
async function halfOnDisk(fileName: string): Promise<void> {
  const partial = path.join(models, `${fileName}.partial`);
  await eventually(async () => (await stat(partial).catch(() => undefined))?.size === half, `half of ${fileName} on disk`, 5_000);
}

/** The files under `dir` this process holds open, where the platform lists them (Linux's /proc). */
async function openFilesIn(dir: string): Promise<string[]> {
  const descriptors = await readdir("/proc/self/fd").catch(() => []);
  const targets = await Promise.all(descriptors.map((fd) => readlink(`/proc/self/fd/${fd}`).catch(() => "")));
  return targets.filter((target) => target.startsWith(dir));
}

async function filesIn(dir: string): Promise<string[]> {
  return (await readdir(dir).catch(() => [])).sort();
}

describe("pulling a model file", () => {
  it("downloads the file under its name with its sha256, reports progress sparingly, and leaves no partial", async () => {
    const { result, reports } = await pull("/files/tiny.gguf", { sha256: sha256.toUpperCase() });

    expect(result).toEqual({ path: path.join(models, "tiny.gguf"), fileName: "tiny.gguf", bytes: content.length, sha256, resumed: false });
    expect((await readFile(result.path)).equals(content)).toBe(true);
    expect(await filesIn(models)).toEqual(["tiny.gguf"]);
    expect(reports.at(-1)).toEqual({ receivedBytes: content.length, totalBytes: content.length, resumedFrom: 0 });
    expect(reports.length).toBeLessThanOrEqual(3); // a local transfer takes well under the 250 ms between reports
    expect(server.requests[0]?.headers["accept-encoding"]).toBe("identity");
  });

  it("names the file after a Hugging Face resolve URL's path, follows its redirect to the CDN and passes headers on", async () => {
    const { result } = await pull("/org/repo/resolve/main/model.gguf?download=true", { headers: { authorization: "Bearer hf_token" } });

    expect(result.fileName).toBe("model.gguf");
    expect(result.sha256).toBe(sha256);
    expect(await filesIn(models)).toEqual(["model.gguf"]);
    expect(server.requests.map((request) => request.path)).toEqual(["/org/repo/resolve/main/model.gguf?download=true", "/cdn/blob-7f3a?signature=abc"]);
    expect(server.requests[0]?.headers.authorization).toBe("Bearer hf_token");
  });

  it("does not send the request's credentials on to a CDN of another origin", async () => {
    const cdn = await startFileServer(content);
    try {
      server.cdnOrigin = cdn.origin;

      const { result } = await pull("/org/repo/resolve/main/model.gguf", { headers: { Authorization: "Bearer hf_token", "X-Trace": "1" } });

      expect(result.sha256).toBe(sha256);
      expect(server.requests[0]?.headers).toMatchObject({ authorization: "Bearer hf_token", "x-trace": "1" });
      expect(cdn.requests.map((request) => request.path)).toEqual(["/cdn/blob-7f3a?signature=abc"]);
      expect(cdn.requests[0]?.headers.authorization).toBeUndefined();
      expect(cdn.requests[0]?.headers["x-trace"]).toBe("1");
      await eventually(async () => (await cdn.connections()) === 0, "the CDN's connection to close", 2_000);
    } finally {
      await cdn.close();
    }
  });

  it("resumes with a Range request after the connection drops halfway, and the sha256 covers the whole file", async () => {
    server.stallAfter = half;
    const pulling = pull("/files/tiny.gguf", { sha256 });
    await halfOnDisk("tiny.gguf");
    server.stallAfter = undefined;
    server.dropConnections();

    const { result, reports } = await pulling;

    expect(result).toMatchObject({ bytes: content.length, sha256, resumed: true });
    expect((await readFile(result.path)).equals(content)).toBe(true);
    expect(server.requests.map((request) => [request.headers.range, request.headers["if-range"]])).toEqual([
      [undefined, undefined],
      [`bytes=${half}-`, server.etag],
    ]);
    expect(reports.at(-1)).toEqual({ receivedBytes: content.length, totalBytes: content.length, resumedFrom: half });
    expect(await filesIn(models)).toEqual(["tiny.gguf"]);
  });

  it("ends with the right file however much of an answer cut by the server arrived before the cut", async () => {
    server.cutAfter = half;
    server.cuts = 2;

    const { result } = await pull("/files/tiny.gguf", { sha256 });

    expect(result).toMatchObject({ bytes: content.length, sha256 });
    expect((await readFile(result.path)).equals(content)).toBe(true);
    expect(server.requests.length).toBeGreaterThanOrEqual(2); // one resumed answer may hold the rest before its cut
  });

  it("starts over when the server ignores the Range request, and still ends with the right file", async () => {
    server.ignoreRange = true;
    server.stallAfter = half;
    const pulling = pull("/files/tiny.gguf");
    await halfOnDisk("tiny.gguf");
    server.stallAfter = undefined;
    server.dropConnections();

    const { result } = await pulling;

    expect(result).toMatchObject({ bytes: content.length, sha256, resumed: false });
    expect((await readFile(result.path)).equals(content)).toBe(true);
    expect(server.requests[1]?.headers.range).toBe(`bytes=${half}-`);
  });

  it("fails with interrupted once retries get no further, keeping the partial for a later pull", async () => {
    server.stallAfter = half;
    const pulling = pullError("/files/tiny.gguf", { retries: 1 });
    await halfOnDisk("tiny.gguf");
    server.hangUps = Number.POSITIVE_INFINITY;
    server.dropConnections();

    const error = await pulling;

    expect(error.code).toBe("interrupted");
    expect(server.requests).toHaveLength(3); // the first got halfway; two more in a row got no further
    expect(await filesIn(models)).toEqual(["tiny.gguf.partial", "tiny.gguf.partial.json"]);
    expect((await stat(path.join(models, "tiny.gguf.partial"))).size).toBe(half);
  });

  it("deletes the download and fails with checksum_mismatch when the sha256 is not the one asked for", async () => {
    const error = await pullError("/files/tiny.gguf", { sha256: "0".repeat(64) });

    expect(error.code).toBe("checksum_mismatch");
    expect(error.message).toContain(sha256);
    expect(await filesIn(models)).toEqual([]);
  });

  it.each([
    ["a file name climbing out of the dir", { fileName: "../x.gguf" }],
    ["a file name with a separator", { fileName: "a/b.gguf" }],
    ["a file name with a backslash", { fileName: "a\\b.gguf" }],
    ["an absolute file name", { fileName: "/tmp/x.gguf" }],
    ["a hidden file name", { fileName: ".hidden.gguf" }],
    ["a file name that is not .gguf", { fileName: "x.bin" }],
    ["a file name with NUL", { fileName: "x\u0000.gguf" }],
    ["a file name with a drive", { fileName: "C:x.gguf" }],
    ["a URL whose last segment hides a separator", { url: "/files/a%2Fb.gguf" }],
    ["a URL whose last segment climbs out", { url: "/files/..%2F..%2Fx.gguf" }],
    ["a URL ending in a slash", { url: "/files/" }],
    ["a URL whose file is not .gguf", { url: "/files/model.safetensors" }],
  ])("refuses %s with bad_path, fetching and writing nothing", async (_case, request) => {
    const { url = "/files/tiny.gguf", fileName } = request as { url?: string; fileName?: string };

    const error = await pullError(url, fileName === undefined ? {} : { fileName });

    expect(error.code).toBe("bad_path");
    expect(server.requests).toHaveLength(0);
    expect(await filesIn(root)).toEqual([]);
  });

  it.each(["ftp://127.0.0.1/x.gguf", "file:///tmp/x.gguf", "not a url"])("refuses %s with bad_url", async (url) => {
    const error: unknown = await pullModel({ url, dir: models }, () => {}, new AbortController().signal).catch((rejection: unknown) => rejection);

    expect(error).toBeInstanceOf(PullError);
    expect((error as PullError).code).toBe("bad_url");
    expect(await filesIn(root)).toEqual([]);
  });

  it("refuses a malformed sha256 with bad_request", async () => {
    const error = await pullError("/files/tiny.gguf", { sha256: "abc" });

    expect(error.code).toBe("bad_request");
    expect(server.requests).toHaveLength(0);
  });

  it("reports a 404 as http_error with its status and leaves nothing behind", async () => {
    const error = await pullError("/missing/tiny.gguf");

    expect(error.code).toBe("http_error");
    expect(error.status).toBe(404);
    expect(await filesIn(models)).toEqual([]);
  });

  it("stops promptly when aborted, keeps the partial, and a later pull resumes it", async () => {
    server.stallAfter = half;
    const controller = new AbortController();
    const reason = new Error("the operator cancelled the pull");
    const pulling = pull("/files/tiny.gguf", { sha256 }, controller.signal);
    const settled = pulling.catch((error: unknown) => error);
    await halfOnDisk("tiny.gguf");

    const abortedAt = performance.now();
    controller.abort(reason);

    expect(await settled).toBe(reason);
    expect(performance.now() - abortedAt).toBeLessThan(500);
    expect(await filesIn(models)).toEqual(["tiny.gguf.partial", "tiny.gguf.partial.json"]);
    expect((await stat(path.join(models, "tiny.gguf.partial"))).size).toBe(half);

    server.stallAfter = undefined;
    const { result } = await pull("/files/tiny.gguf", { sha256 });

    expect(result).toMatchObject({ bytes: content.length, sha256, resumed: true });
    expect(server.requests.at(-1)?.headers.range).toBe(`bytes=${half}-`);
    expect(await filesIn(models)).toEqual(["tiny.gguf"]);
  });

  it("does not splice a file that changed upstream since the partial: If-Range brings it whole", async () => {
    server.stallAfter = half;
    const controller = new AbortController();
    const stalled = pull("/files/tiny.gguf", {}, controller.signal).catch((error: unknown) => error);
    await halfOnDisk("tiny.gguf");
    controller.abort();
    await stalled;

    const changed = deterministicBytes(content.length, 2);
    server.content = changed;
    server.etag = etagOf(changed);
    server.stallAfter = undefined;
    const { result } = await pull("/files/tiny.gguf");

    expect(server.requests.at(-1)?.headers["if-range"]).toBe(etagOf(content));
    expect(result).toMatchObject({ sha256: sha256Of(changed), resumed: false });
    expect((await readFile(result.path)).equals(changed)).toBe(true);
  });

  it("finishes a partial that holds the whole file already (the server answers 416) without fetching it again", async () => {
    const url = `${server.origin}/files/tiny.gguf`;
    await mkdir(models);
    await writeFile(path.join(models, "tiny.gguf.partial"), content);
    await writeFile(path.join(models, "tiny.gguf.partial.json"), JSON.stringify({ url, validator: server.etag, totalBytes: content.length }));

    const { result } = await pull("/files/tiny.gguf", { sha256 });

    expect(result).toMatchObject({ bytes: content.length, sha256, resumed: true });
    expect(server.requests.map((request) => request.headers.range)).toEqual([`bytes=${content.length}-`]);
    expect(await filesIn(models)).toEqual(["tiny.gguf"]);
  });

  it("takes an existing file with the sha256 asked for without a request, and otherwise refuses to overwrite it", async () => {
    await mkdir(models);
    await writeFile(path.join(models, "tiny.gguf"), content);

    const { result } = await pull("/files/tiny.gguf", { sha256 });
    const unverified = await pullError("/files/tiny.gguf");
    const other = await pullError("/files/tiny.gguf", { sha256: "1".repeat(64) });

    expect(result).toEqual({ path: path.join(models, "tiny.gguf"), fileName: "tiny.gguf", bytes: content.length, sha256, resumed: false });
    expect([unverified.code, other.code]).toEqual(["exists", "exists"]);
    expect(server.requests).toHaveLength(0);
    expect((await readFile(path.join(models, "tiny.gguf"))).equals(content)).toBe(true);
  });

  it("refuses a second pull of a file while the first is running", async () => {
    server.stallAfter = half;
    const controller = new AbortController();
    const first = pull("/files/tiny.gguf", {}, controller.signal).catch((error: unknown) => error);
    await eventually(() => server.requests.length === 1, "the first pull's request");

    const second = await pullError("/files/tiny.gguf");
    controller.abort();
    await first;

    expect(second.code).toBe("busy");
    expect(server.requests).toHaveLength(1);
  });

  it("leaves no timer or socket behind: after a retry, an abort mid-body, and an abort in the wait before a retry", async () => {
    const resources = trackResources(["Timeout", "TCPWRAP", "TCPCONNECTWRAP"]);
    try {
      server.cutAfter = half;
      server.cuts = 1;
      await pull("/files/tiny.gguf", { sha256 });

      server.stallAfter = half;
      const midBody = new AbortController();
      const stalled = pull("/files/stalled.gguf", {}, midBody.signal).catch((error: unknown) => error);
      await halfOnDisk("stalled.gguf");
      midBody.abort();
      await stalled;

      server.stallAfter = undefined;
      server.hangUps = Number.POSITIVE_INFINITY;
      const retrying = new AbortController();
      const waiting = pull("/files/hung-up.gguf", {}, retrying.signal).catch((error: unknown) => error);
      await eventually(() => server.requests.length === 4, "the first hang-up");
      retrying.abort();
      await waiting;

      await settled(resources);
      expect(resources.summary()).toBe("");
      expect(await openFilesIn(root)).toEqual([]);
    } finally {
      resources.stop();
    }
  });
});
