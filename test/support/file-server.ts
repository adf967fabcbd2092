// A model file served over HTTP (node:http on port 0) with byte ranges, If-Range and an ETag, that a test can make
// misbehave: hang up, drop the connection partway, ignore ranges, stall, or change the file.
import { createHash } from "node:crypto";
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

export interface ServedRequest {
  path: string;
  headers: IncomingHttpHeaders;
}

export interface FileServer {
  origin: string;
  /** Every request, in order. */
  readonly requests: ServedRequest[];
  /** The file and its ETag; change both to stand for a file changed upstream. */
  content: Buffer;
  etag: string;
  /** Answer every request 200 with the whole file, as a server without range support does. */
  ignoreRange: boolean;
  /** Destroy the connection after this many body bytes, for the next `cuts` requests. */
  cutAfter: number;
  cuts: number;
  /** Destroy the connection of the next `hangUps` requests before answering at all. */
  hangUps: number;
  /** Where `/org/…` redirects to: this server (the default, a relative Location) or another origin, as a CDN is. */
  cdnOrigin: string;
  /** Send this many body bytes, then hold the response open without ending it. */
  stallAfter: number | undefined;
  /** Destroys every open connection, as a network failure would (a stalled answer's, say, once its bytes arrived). */
  dropConnections(): void;
  /** Connections open now (each answer closes its own). */
  connections(): Promise<number>;
  close(): Promise<void>;
}

/**
 * Paths: `/org/{repo}/resolve/{revision}/{file}` redirects (302) to `/cdn/{blob}?signature=…` as Hugging Face does;
 * `/missing/…` is a 404; any other path is the file.
 */
export async function startFileServer(content: Buffer): Promise<FileServer> {
  const server = createServer((req, res) => serve(state, req, res));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const state: FileServer = {
    origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests: [],
    content,
    etag: etagOf(content),
    ignoreRange: false,
    cutAfter: 0,
    cuts: 0,
    hangUps: 0,
    cdnOrigin: "",
    stallAfter: undefined,
    dropConnections: () => server.closeAllConnections(),
    connections: () => new Promise((resolve, reject) => server.getConnections((error, count) => (error ? reject(error) : resolve(count)))),
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
    },
  };
  return state;
}

export function etagOf(content: Buffer): string {
  return `"${createHash("sha256").update(content).digest("hex").slice(0, 16)}"`;
}

/** Bytes that look random and are the same on every run. */
export function deterministicBytes(size: number, seed = 1): Buffer {
  const bytes = Buffer.alloc(size);
  let state = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    // xorshift32
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    bytes[i] = state & 0xff;
  }
  return bytes;
}

function serve(state: FileServer, req: IncomingMessage, res: ServerResponse): void {
  const path = req.url ?? "/";
  state.requests.push({ path, headers: req.headers });
  if (state.hangUps > 0) {
    state.hangUps -= 1;
    req.socket.destroy();
    return;
  }
  if (path.startsWith("/missing/")) {
    res.writeHead(404, { connection: "close", "content-type": "text/plain" }).end("not found");
    return;
  }
  if (path.startsWith("/org/")) {
    res.writeHead(302, { connection: "close", location: `${state.cdnOrigin}/cdn/blob-7f3a?signature=abc` }).end();
    return;
  }
  const size = state.content.length;
  const start = state.ignoreRange ? undefined : rangeStart(req.headers, state.etag);
  if (start !== undefined && start >= size) {
    res.writeHead(416, { connection: "close", "content-range": `bytes */${size}` }).end();
    return;
  }
  const from = start ?? 0;
  const headers: Record<string, string | number> = {
    connection: "close",
    "content-type": "application/octet-stream",
    "content-length": size - from,
    etag: state.etag,
    "accept-ranges": state.ignoreRange ? "none" : "bytes",
  };
  if (start !== undefined) headers["content-range"] = `bytes ${from}-${size - 1}/${size}`;
  res.writeHead(start === undefined ? 200 : 206, headers);
  send(state, res, state.content.subarray(from));
}

function send(state: FileServer, res: ServerResponse, body: Buffer): void {
  if (state.cuts > 0) {
    state.cuts -= 1;
    res.write(body.subarray(0, state.cutAfter), () => res.socket?.destroy());
    return;
  }
  if (state.stallAfter !== undefined) {
    res.write(body.subarray(0, state.stallAfter));
    return;
  }
  res.end(body);
}

/** The first byte asked for by `Range: bytes=N-`, unless If-Range names another version of the file. */
function rangeStart(headers: IncomingHttpHeaders, etag: string): number | undefined {
  const match = /^bytes=(\d+)-$/.exec(headers.range ?? "");
  if (!match?.[1]) return undefined;
  const ifRange = headers["if-range"];
  if (ifRange !== undefined && ifRange !== etag) return undefined;
  return Number(match[1]);
}
