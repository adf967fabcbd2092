// One HTTP request of a pull: asks for the bytes the partial lacks (If-Range guarding the splice) and appends what
// comes back, telling apart the rest of the same file (206), the whole file (200) and an answer that cannot be used.
import type { IncomingMessage } from "node:http";
import { PullError } from "./errors.js";
import { httpGet } from "./http-get.js";
import type { PartialFile, PartialSource } from "./partial.js";

/**
 * How a request ended: the file is whole; the connection dropped (ask again for the rest); or the answer could not
 * be spliced onto the partial, which was emptied (ask again for all of it).
 */
export type TransferEnd = { kind: "complete" } | { kind: "cut"; reason: string } | { kind: "restart"; reason: string };

/** A body to append: the whole file's size, when the server said. */
interface Start {
  totalBytes: number | undefined;
}

/** Told the partial's size as bytes arrive; `last` once the file is whole. */
export type TransferProgress = (receivedBytes: number, totalBytes: number | undefined, resumedFrom: number, last: boolean) => void;

/** Asks for what `partial` lacks and appends it; `headers` are the request's own, with lower-case names. */
export async function transfer(
  url: URL,
  headers: Record<string, string>,
  partial: PartialFile,
  progress: TransferProgress,
  signal: AbortSignal,
): Promise<TransferEnd> {
  let response: IncomingMessage;
  try {
    response = await httpGet(url, rangeHeaders(headers, partial), signal);
  } catch (error) {
    if (signal.aborted) throw signal.reason;
    if (error instanceof PullError) throw error;
    return { kind: "cut", reason: reasonOf(error) };
  }
  try {
    const start = await startOf(url, response, partial);
    if ("kind" in start) {
      if (start.kind === "complete") progress(partial.size, partial.size, partial.size, true);
      return start;
    }
    return await receive(response, partial, start.totalBytes, progress, signal);
  } finally {
    response.destroy(); // and with it its socket, whether or not the body was read to its end
  }
}

function rangeHeaders(own: Record<string, string>, partial: PartialFile): Record<string, string> {
  // Byte ranges and Content-Length then count the file's own bytes, not those of a compressed copy.
  const headers: Record<string, string> = { ...own, "accept-encoding": "identity" };
  delete headers.range;
  delete headers["if-range"];
  if (partial.size === 0) return headers;
  headers.range = `bytes=${partial.size}-`;
  const validator = partial.source?.validator;
  if (validator !== undefined) headers["if-range"] = validator;
  return headers;
}

/** Reads the status and headers: where the body's bytes belong, or how the request ended without a usable body. */
async function startOf(url: URL, response: IncomingMessage, partial: PartialFile): Promise<Start | TransferEnd> {
  const status = response.statusCode ?? 0;
  const encoding = response.headers["content-encoding"];
  if ((status === 200 || status === 206) && encoding !== undefined && encoding.toLowerCase() !== "identity") {
    throw new PullError(`${url.host} sent the file ${encoding}-encoded though asked for it as it is`, "http_error", { status });
  }
  if (status === 200) {
    const totalBytes = contentLength(response);
    await partial.restart(sourceOf(url, response, totalBytes));
    return { totalBytes };
  }
  if (status === 206) {
    const range = contentRange(response);
    const known = partial.source?.totalBytes;
    const fits = range !== undefined && range.start === partial.size && range.end + 1 === range.total && (known === undefined || known === range.total);
    if (!fits || partial.size === 0) return restart(partial, `${url.host} sent ${response.headers["content-range"]} for the bytes from ${partial.size}`);
    partial.resume();
    return { totalBytes: range.total };
  }
  if (status === 416 && partial.size > 0) {
    // The partial may hold the whole file already: a pull that stopped before its rename.
    if (unsatisfiedTotal(response) === partial.size && partial.source?.totalBytes === partial.size) {
      partial.resume();
      return { kind: "complete" };
    }
    return restart(partial, `${url.host} has fewer bytes than the partial holds`);
  }
  throw new PullError(`${url.host} answered ${status} ${response.statusMessage ?? ""}`.trim(), "http_error", { status });
}

async function restart(partial: PartialFile, reason: string): Promise<TransferEnd> {
  await partial.restart(undefined);
  return { kind: "restart", reason };
}

/** Appends the body to the partial; a connection that drops, or a body that ends short, is a cut. */
async function receive(
  response: IncomingMessage,
  partial: PartialFile,
  totalBytes: number | undefined,
  progress: TransferProgress,
  signal: AbortSignal,
): Promise<TransferEnd> {
  const resumedFrom = partial.size;
  progress(partial.size, totalBytes, resumedFrom, false);
  const chunks: AsyncIterable<Buffer> = response; // a body without an encoding set comes as Buffers
  try {
    for await (const bytes of chunks) {
      await partial.append(bytes);
      progress(partial.size, totalBytes, resumedFrom, false);
    }
  } catch (error) {
    if (signal.aborted) throw signal.reason;
    if (error instanceof PullError) throw error;
    return { kind: "cut", reason: reasonOf(error) };
  }
  if (totalBytes !== undefined && partial.size < totalBytes) return { kind: "cut", reason: `the body ended after ${partial.size} of ${totalBytes} bytes` };
  if (totalBytes !== undefined && partial.size > totalBytes) {
    const size = partial.size;
    await partial.restart(undefined);
    throw new PullError(`the server sent ${size} bytes of a file it said has ${totalBytes}`, "size_mismatch");
  }
  progress(partial.size, totalBytes, resumedFrom, true);
  return { kind: "complete" };
}

function sourceOf(url: URL, response: IncomingMessage, totalBytes: number | undefined): PartialSource {
  const { etag, "last-modified": lastModified } = response.headers;
  // A weak ETag may not be sent as If-Range (RFC 9110, 13.1.5): the date is the next best validator.
  const validator = etag !== undefined && !etag.startsWith("W/") ? etag : lastModified;
  return { url: url.href, validator, totalBytes };
}

function contentLength(response: IncomingMessage): number | undefined {
  const value = response.headers["content-length"];
  return value !== undefined && /^\d+$/.test(value) ? Number(value) : undefined;
}

/** `Content-Range: bytes start-end/total` with a known total (`*` is of no use to a splice). */
function contentRange(response: IncomingMessage): { start: number; end: number; total: number } | undefined {
  const match = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(response.headers["content-range"] ?? "");
  if (!match) return undefined;
  const [start, end, total] = match.slice(1).map(Number);
  if (start === undefined || end === undefined || total === undefined || start > end || end >= total) return undefined;
  return { start, end, total };
}

/** The total of a 416's `Content-Range: bytes *\/total`. */
function unsatisfiedTotal(response: IncomingMessage): number | undefined {
  const match = /^bytes \*\/(\d+)$/.exec(response.headers["content-range"] ?? "");
  return match?.[1] === undefined ? undefined : Number(match[1]);
}

function reasonOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
