// Pulling a model file over HTTP(S) into the worker's models dir (behind POST /v1/models/pull): resumed after a
// dropped connection, checked against its SHA-256, and never under its final name until whole. See docs/model-pull.md.
import { lstat, mkdir, open } from "node:fs/promises";
import { validateHeaderName, validateHeaderValue } from "node:http";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { io, PullError, unlessMissing } from "./model-pull/errors.js";
import { hashFile, PartialFile } from "./model-pull/partial.js";
import { type PullTarget, pullTarget, pullUrl } from "./model-pull/target.js";
import { type TransferProgress, transfer } from "./model-pull/transfer.js";

export { PullError, type PullErrorCode } from "./model-pull/errors.js";

export interface PullRequest {
  /** http: or https:; redirects are followed (a Hugging Face `…/resolve/{revision}/{path}` URL sends to its CDN). */
  url: string;
  /** The models dir; made when missing. */
  dir: string;
  /** The name to save under, by default the URL's last path segment: a plain `.gguf` file name either way. */
  fileName?: string;
  /** The file's SHA-256 in hex, checked before the file gets its name. */
  sha256?: string;
  /** Sent with every request, e.g. `authorization: Bearer …` for a gated Hugging Face repo. */
  headers?: Record<string, string>;
  /** How many times in a row a dropped connection is retried without getting further; 3 when absent. */
  retries?: number;
}

export interface PullProgress {
  /** Bytes received, those kept from earlier requests included. */
  receivedBytes: number;
  /** The file's size, when the server said. */
  totalBytes: number | undefined;
  /** Where the current request started: 0 unless it resumed. */
  resumedFrom: number;
}

export interface PullResult {
  path: string;
  fileName: string;
  bytes: number;
  /** The file's SHA-256 in lower-case hex, computed whether or not one was given. */
  sha256: string;
  /** Whether bytes of an earlier request (a dropped connection, an earlier pull) were kept rather than fetched again. */
  resumed: boolean;
}

/** The progress callback is called at most this often, and once more when the file is whole. */
const PROGRESS_INTERVAL_MS = 250;
const DEFAULT_RETRIES = 3;
/** The wait before the first retry, doubled for each retry in a row that got no further. */
const FIRST_RETRY_DELAY_MS = 250;
const MAX_RETRY_DELAY_MS = 4_000;

/** The files this process is pulling: two pulls of one file would write into the same partial. */
const pulling = new Set<string>();

/** A checked request. */
interface Pull {
  url: URL;
  target: PullTarget;
  sha256: string | undefined;
  /** With lower-case names. */
  headers: Record<string, string>;
  retries: number;
}

/**
 * Downloads `request.url` into `request.dir`. Rejects with a PullError, or with `signal.reason` once `signal` aborts;
 * either way, bytes received are kept in the partial for a later pull to resume (unless they are known to be wrong).
 */
export async function pullModel(request: PullRequest, onProgress: (progress: PullProgress) => void, signal: AbortSignal): Promise<PullResult> {
  signal.throwIfAborted();
  const pull = checkRequest(request);
  if (pulling.has(pull.target.path)) throw new PullError(`${pull.target.fileName} is being pulled already`, "busy");
  pulling.add(pull.target.path);
  try {
    await io(`make the models dir ${request.dir}`, mkdir(path.dirname(pull.target.path), { recursive: true }));
    return (await existing(pull, signal)) ?? (await download(pull, throttle(onProgress), signal));
  } finally {
    pulling.delete(pull.target.path);
  }
}

/** Everything a request says checked before anything is written or fetched. */
function checkRequest(request: PullRequest): Pull {
  const url = pullUrl(request.url);
  const target = pullTarget(url, request.dir, request.fileName);
  const sha256 = request.sha256?.toLowerCase();
  if (sha256 !== undefined && !/^[0-9a-f]{64}$/.test(sha256)) {
    throw new PullError(`sha256 must be 64 hex digits, not ${JSON.stringify(request.sha256)}`, "bad_request");
  }
  const retries = request.retries ?? DEFAULT_RETRIES;
  if (!Number.isSafeInteger(retries) || retries < 0) throw new PullError(`retries must be a whole number of at least 0, not ${retries}`, "bad_request");
  return { url, target, sha256, headers: checkHeaders(request.headers ?? {}), retries };
}

function checkHeaders(given: Record<string, string>): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(given)) {
    try {
      validateHeaderName(name);
      validateHeaderValue(name, value);
    } catch (error) {
      const why = error instanceof Error ? error.message : String(error);
      throw new PullError(`the header ${JSON.stringify(name)} cannot be sent: ${why}`, "bad_request", { cause: error });
    }
    headers[name.toLowerCase()] = value;
  }
  return headers;
}

/** The final file when it is there already: taken if it is the one asked for, refused otherwise (never overwritten). */
async function existing({ target, sha256 }: Pull, signal: AbortSignal): Promise<PullResult | undefined> {
  const stats = await io(`look at ${target.path}`, unlessMissing(lstat(target.path)));
  if (stats === undefined) return undefined;
  const refuse = (why: string) => new PullError(`${target.fileName} exists already ${why}; remove it to pull it again`, "exists");
  if (!stats.isFile()) throw refuse("and is not a regular file");
  if (sha256 === undefined) throw refuse("(give its sha256 to take it as it is)");
  const handle = await io(`open ${target.path}`, open(target.path, "r"));
  try {
    const { hash, bytes } = await hashFile(handle, signal);
    const actual = hash.digest("hex");
    if (actual !== sha256) throw refuse(`with sha256 ${actual}`);
    return { path: target.path, fileName: target.fileName, bytes, sha256: actual, resumed: false };
  } finally {
    await handle.close();
  }
}

async function download(pull: Pull, progress: TransferProgress, signal: AbortSignal): Promise<PullResult> {
  const { target } = pull;
  const partial = await PartialFile.open(target, pull.url.href, signal);
  try {
    await receiveAll(pull, partial, progress, signal);
    const sha256 = partial.sha256();
    if (pull.sha256 !== undefined && sha256 !== pull.sha256) {
      await partial.restart(undefined); // wrong, not short: resuming it could only end the same way
      throw new PullError(`${target.fileName} arrived with sha256 ${sha256}, not ${pull.sha256}`, "checksum_mismatch");
    }
    const bytes = partial.size;
    await partial.commit();
    return { path: target.path, fileName: target.fileName, bytes, sha256, resumed: partial.resumed };
  } finally {
    await partial.close();
  }
}

/** Requests until the file is whole, resuming after each dropped connection, until `retries` in a row get no further. */
async function receiveAll(pull: Pull, partial: PartialFile, progress: TransferProgress, signal: AbortSignal): Promise<void> {
  let furthest = partial.size;
  let fruitless = 0;
  for (;;) {
    const end = await transfer(pull.url, pull.headers, partial, progress, signal);
    if (end.kind === "complete") return;
    if (partial.size > furthest) {
      furthest = partial.size;
      fruitless = 0;
    } else {
      fruitless += 1;
    }
    if (fruitless > pull.retries) throw interrupted(pull, partial, end.reason);
    if (end.kind === "cut") await backoff(fruitless, signal);
  }
}

function interrupted({ url, target }: Pull, partial: PartialFile, reason: string): PullError {
  const kept = partial.size > 0 ? `${partial.size} bytes are kept in ${path.basename(target.partialPath)} for a later pull` : "nothing was kept";
  return new PullError(`the download from ${url.host} kept failing without getting further (${reason}); ${kept}`, "interrupted");
}

async function backoff(fruitless: number, signal: AbortSignal): Promise<void> {
  try {
    await sleep(Math.min(FIRST_RETRY_DELAY_MS * 2 ** fruitless, MAX_RETRY_DELAY_MS), undefined, { signal });
  } catch (error) {
    throw signal.aborted ? signal.reason : error;
  }
}

/** Passes progress on at most every PROGRESS_INTERVAL_MS, and always the last report. */
function throttle(onProgress: (progress: PullProgress) => void): TransferProgress {
  let sentAt = Number.NEGATIVE_INFINITY;
  return (receivedBytes, totalBytes, resumedFrom, last) => {
    const now = performance.now();
    if (!last && now - sentAt < PROGRESS_INTERVAL_MS) return;
    sentAt = now;
    onProgress({ receivedBytes, totalBytes, resumedFrom });
  };
}
