// Server-sent events: framing, the keepalive comment during silent periods, and the proxy-safe headers.
import type { ServerResponse } from "node:http";
import { RESPONSE_ALREADY_SENT } from "@hono/node-server/utils/response";

const encoder = new TextEncoder();
/** The keepalive frame unless a dialect names its own: an SSE comment, which every client skips. */
export const COMMENT_KEEPALIVE = ": keepalive\n\n";
const MIN_HIGH_WATER_BYTES = 32 * 1024;

export const SSE_HEADERS = {
  "Content-Type": "text/event-stream; charset=utf-8",
  "Cache-Control": "no-cache",
  Connection: "keep-alive",
  "X-Accel-Buffering": "no",
} as const;

export interface SseOptions {
  keepaliveMs: number;
  /** What to send after `keepaliveMs` of silence (default: an SSE comment); a dialect may name its own event. */
  keepaliveFrame?: string;
  /** The body's media type, for a stream that is not SSE (Ollama's NDJSON); default text/event-stream. */
  contentType?: string;
  /**
   * Flow control: past half of `slowClientBytes` unread, the stream is backlogged (its writer should wait for
   * `drained()`); a client that stays backlogged for `slowClientMs` is given up on.
   */
  slowClientMs: number;
  slowClientBytes: number;
  /** Called once when the client is given up on (it stopped reading); the stream is then torn down. */
  onStall?: () => void;
  /** Told when the stream opens, sends a keepalive, and is released (metrics). */
  observer?: SseObserver | undefined;
}

export interface SseObserver {
  opened(): void;
  keepalive(): void;
  /** Called once, when the stream has let go of everything (after the client read the end, left, or stalled). */
  released(): void;
}

/** Where a stream's text goes: straight into Node's response (the server's fast path) or a web ReadableStream. */
interface SseSink {
  write(text: string): void;
  /** Bytes written that the client's connection has not taken yet. */
  backlog(): number;
  /** Calls `listener` whenever the client took what was written (the backlog emptied or fell). */
  onDrain(listener: () => void): void;
  /**
   * Ends the body after `last` (may be empty); `drained` is called once the client has taken all of it (or the
   * connection is gone).
   */
  end(last: string, drained: () => void): void;
  /** Drops the connection at once. */
  destroy(): void;
}

/** Writes text straight to the socket through Node's response: no web stream, no encoding step per event. */
class NodeResponseSink implements SseSink {
  constructor(
    private readonly out: ServerResponse,
    headers: Record<string, string>,
  ) {
    // Write errors after the client left surface as the request's abort; this keeps them from being unhandled.
    out.on("error", () => {});
    out.writeHead(200, headers);
    out.flushHeaders();
  }

  write(text: string): void {
    this.out.write(text);
  }

  backlog(): number {
    return this.out.writableLength;
  }

  onDrain(listener: () => void): void {
    this.out.on("drain", listener);
  }

  end(last: string, drained: () => void): void {
    const done = () => {
      this.out.off("finish", done);
      this.out.off("close", done);
      drained();
    };
    this.out.once("finish", done);
    this.out.once("close", done);
    // The last events and the end of the chunked body leave in one write.
    this.out.end(last);
  }

  destroy(): void {
    this.out.destroy();
  }
}

/** A web ReadableStream body, for servers other than Node's (and app.fetch in-process). */
class WebStreamSink implements SseSink {
  readonly body: ReadableStream<Uint8Array>;
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  private drained: (() => void) | undefined;
  private drainListener: (() => void) | undefined;

  constructor(onCancel: () => void) {
    this.body = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.controller = controller;
        },
        // The reader caught up with everything queued: a stream waiting to end can end now.
        pull: () => {
          this.drainListener?.();
          this.finishIfDrained();
        },
        cancel: onCancel,
      },
      // Count the queue in bytes, and queue nothing ahead of the reader: desiredSize is then minus the unread bytes.
      { highWaterMark: 0, size: (chunk) => chunk.byteLength },
    );
  }

  write(text: string): void {
    this.controller.enqueue(encoder.encode(text));
  }

  backlog(): number {
    return -(this.controller.desiredSize ?? 0);
  }

  onDrain(listener: () => void): void {
    this.drainListener = listener;
  }

  end(last: string, drained: () => void): void {
    if (last !== "") this.write(last);
    this.drained = drained;
    this.finishIfDrained();
  }

  destroy(): void {
    try {
      this.controller.error(new Error("client too slow"));
    } catch {
      // Already errored or cancelled.
    }
  }

  private finishIfDrained(): void {
    const drained = this.drained;
    if (!drained || this.backlog() > 0) return;
    this.drained = undefined;
    try {
      this.controller.close();
    } catch {
      // Already cancelled by the reader: nothing left to end.
    }
    drained();
  }
}

/**
 * One SSE response. Writes are synchronous; a keepalive comment goes out whenever nothing was written for
 * `keepaliveMs`. The stream drops its timer when the client goes away (`signal`) or when `close()` is called.
 * Flow control: once half of `slowClientBytes` waits unread the stream is `backlogged`, and its writer waits for
 * `drained()` before writing more (which in turn stops the worker); a client that stays backlogged for
 * `slowClientMs` is torn down, so it can neither pin a worker nor grow memory without bound.
 */
export class SseStream {
  private lastWriteAt = Date.now();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Since when the unread backlog has stayed above the high-water mark. */
  private stalledSince: number | undefined;
  /** Fires when a backlog that began at `stalledSince` has lasted `slowClientMs` (nothing else may be written meanwhile). */
  private stallTimer: NodeJS.Timeout | undefined;
  private drainTimer: NodeJS.Timeout | undefined;
  private released = false;
  private readonly highWaterBytes: number;
  private drainWaiters: Array<() => void> = [];

  private constructor(
    private readonly options: SseOptions,
    private readonly signal: AbortSignal,
    private readonly sink: SseSink,
  ) {
    // Past Node's own high-water mark (16 KiB) a write reports back-pressure and a 'drain' follows: stay above it.
    this.highWaterBytes = Math.max(MIN_HIGH_WATER_BYTES, Math.floor(options.slowClientBytes / 2));
    sink.onDrain(this.onDrain);
  }

  /**
   * Opens a stream and the Response to return from the route: with Node's `outgoing` response at hand the stream
   * writes to it directly (and the Response only tells the server so), otherwise it is a web body. `extraHeaders`
   * (CORS, the request id) go out with the SSE headers, since no middleware sees a response written directly.
   */
  static open(
    options: SseOptions,
    signal: AbortSignal,
    outgoing?: ServerResponse,
    extraHeaders?: Headers | Record<string, string>,
  ): { sse: SseStream; response: Response } {
    // A plain object (what Node's writeHead takes): no Headers object to build, sort and copy per stream.
    const headers: Record<string, string> = {};
    if (extraHeaders instanceof Headers) extraHeaders.forEach((value, name) => (headers[name] = value));
    else if (extraHeaders) Object.assign(headers, extraHeaders);
    Object.assign(headers, SSE_HEADERS);
    if (options.contentType !== undefined) headers["Content-Type"] = options.contentType;
    if (outgoing) {
      const sse = new SseStream(options, signal, new NodeResponseSink(outgoing, headers));
      sse.start();
      return { sse, response: alreadySentResponse() };
    }
    let sse: SseStream | undefined;
    const sink = new WebStreamSink(() => sse?.teardown());
    sse = new SseStream(options, signal, sink);
    sse.start();
    return { sse, response: new Response(sink.body, { status: 200, headers }) };
  }

  private start(): void {
    this.options.observer?.opened();
    this.timer = setTimeout(this.onTimer, this.options.keepaliveMs);
    if (this.signal.aborted) this.teardown();
    else this.signal.addEventListener("abort", this.onAbort, { once: true });
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Bytes written that the client has not read yet. */
  get backlog(): number {
    return this.sink.backlog();
  }

  /** Whether the client is behind by more than the high-water mark: write nothing more until `drained()`. */
  get backlogged(): boolean {
    return !this.closed && this.sink.backlog() > this.highWaterBytes;
  }

  /** Resolves once the client caught up below the high-water mark, or the stream ended (whichever comes first). */
  drained(): Promise<void> {
    if (!this.backlogged) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Writes `data: <json>\n\n` for each already-serialised JSON text, in one write. */
  data(...jsonTexts: string[]): void {
    this.write(dataFrames(jsonTexts));
  }

  /** Writes ready SSE text (one or more whole frames; see dataFrame and eventFrame). */
  write(frames: string): void {
    if (frames === "" || this.closed) return;
    this.lastWriteAt = Date.now();
    this.sink.write(frames);
    this.checkStall(this.lastWriteAt);
  }

  /** Ends the response normally; output the client has not read yet gets `slowClientMs` to be read. */
  close(): void {
    this.end("");
  }

  /** Writes `last` (whole frames, may be empty) and ends the response, in one write. */
  end(last: string): void {
    if (this.closed) return;
    this.dispose();
    this.drainTimer = setTimeout(() => this.giveUp(), this.options.slowClientMs);
    this.sink.end(last, () => this.teardown());
  }

  private checkStall(now: number): void {
    if (this.sink.backlog() <= this.highWaterBytes) {
      this.stalledSince = undefined;
      return;
    }
    if (this.stalledSince === undefined) {
      this.stalledSince = now;
      this.armStallTimer(this.options.slowClientMs);
    }
    if (now - this.stalledSince >= this.options.slowClientMs) this.giveUp();
  }

  private armStallTimer(ms: number): void {
    clearTimeout(this.stallTimer);
    this.stallTimer = setTimeout(() => {
      this.stallTimer = undefined;
      if (this.closed || this.stalledSince === undefined) return;
      const now = Date.now();
      this.checkStall(now);
      // Still behind, but since less long (it caught up for a while in between): look again when it may be due.
      if (!this.closed && this.stalledSince !== undefined) this.armStallTimer(this.stalledSince + this.options.slowClientMs - now);
    }, ms);
  }

  /** The client stopped reading: tell the owner, then drop the connection. */
  private giveUp(): void {
    const wasOpen = !this.closed;
    this.teardown();
    if (wasOpen) this.options.onStall?.();
    this.sink.destroy();
  }

  private readonly onDrain = (): void => {
    if (this.drainWaiters.length === 0 || this.backlogged) return;
    this.stalledSince = undefined;
    this.wakeDrainWaiters();
  };

  private wakeDrainWaiters(): void {
    for (const resolve of this.drainWaiters.splice(0)) resolve();
  }

  private teardown(): void {
    this.dispose();
    this.signal.removeEventListener("abort", this.onAbort);
    clearTimeout(this.drainTimer);
    this.drainTimer = undefined;
    if (!this.released) {
      this.released = true;
      this.options.observer?.released();
    }
  }

  private readonly onTimer = (): void => {
    if (this.closed) return;
    // (A backlog is judged by its own timer, armed by the write that made it: see checkStall.)
    const now = Date.now();
    const idle = now - this.lastWriteAt;
    if (idle >= this.options.keepaliveMs) {
      // Bytes still on their way keep the connection busy already: no keepalive behind them.
      if (this.sink.backlog() === 0) {
        this.write(this.options.keepaliveFrame ?? COMMENT_KEEPALIVE);
        this.options.observer?.keepalive();
      }
      this.timer = setTimeout(this.onTimer, this.options.keepaliveMs);
    } else {
      this.timer = setTimeout(this.onTimer, this.options.keepaliveMs - idle);
    }
  };

  private readonly onAbort = (): void => this.teardown();

  private dispose(): void {
    this.closed = true;
    clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
    this.wakeDrainWaiters();
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/**
 * A response of its own (middleware may still touch its headers), marked as already sent. @hono/node-server honours
 * the mark only on a response it cannot write from its fast-path cache, and Hono copies the returned response into
 * such a cached one when middleware read `c.res` first (CORS does): reading `body` turns that cache off, in this
 * response and in any copy of it.
 */
function alreadySentResponse(): Response {
  const response = new Response(null, { headers: RESPONSE_ALREADY_SENT.headers });
  void response.body;
  return response;
}

/** One `data:` frame of already-serialised JSON. */
export function dataFrame(json: string): string {
  return `data: ${json}\n\n`;
}

/** A `data:` frame for each already-serialised JSON text, as one string. */
export function dataFrames(jsonTexts: readonly string[]): string {
  let frames = "";
  for (const json of jsonTexts) frames += dataFrame(json);
  return frames;
}

/** One `event:` + `data:` frame; an event name may not hold a line break (it would forge another field). */
export function eventFrame(event: string, json: string): string {
  if (/[\r\n]/.test(event)) throw new Error("an SSE event name cannot contain a line break");
  return `event: ${event}\ndata: ${json}\n\n`;
}
