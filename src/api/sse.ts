// Server-sent events: framing, the keepalive comment during silent periods, and the proxy-safe headers.

const encoder = new TextEncoder();
const KEEPALIVE = encoder.encode(": keepalive\n\n");
const DONE = encoder.encode("data: [DONE]\n\n");

export const SSE_HEADERS = {
  "Content-Type": "text/event-stream; charset=utf-8",
  "Cache-Control": "no-cache",
  Connection: "keep-alive",
  "X-Accel-Buffering": "no",
} as const;

export interface SseOptions {
  keepaliveMs: number;
  /** A client holding more than `slowClientBytes` of unread output for `slowClientMs` is given up on. */
  slowClientMs: number;
  slowClientBytes: number;
  /** Called once when the client is given up on (it stopped reading); the stream is then torn down. */
  onStall?: () => void;
  /** Drops the client's connection (quietly, unlike erroring the body, which the server logs). */
  destroyConnection?: () => void;
  /** Told when the stream opens, sends a keepalive, and is released (metrics). */
  observer?: SseObserver | undefined;
}

export interface SseObserver {
  opened(): void;
  keepalive(): void;
  /** Called once, when the stream has let go of everything (after the client read the end, left, or stalled). */
  released(): void;
}

/**
 * One SSE response body. Writes are synchronous enqueues; a keepalive comment goes out whenever nothing was
 * written for `keepaliveMs`. The stream closes itself, and drops its timer, when the client goes away
 * (`signal`) or when `close()` is called. A client that stops reading is torn down after `slowClientMs`, so it
 * cannot pin a worker or grow memory without bound.
 */
export class SseStream {
  readonly body: ReadableStream<Uint8Array>;
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  private lastWriteAt = Date.now();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Since when the unread backlog has stayed above the slow-client limit. */
  private stalledSince: number | undefined;
  private drainTimer: NodeJS.Timeout | undefined;
  /** close() was called while the client still had output to read. */
  private ending = false;
  private released = false;
  private readonly keepaliveMs: number;
  keepalivesSent = 0;

  constructor(
    private readonly options: SseOptions,
    private readonly signal: AbortSignal,
  ) {
    const keepaliveMs = options.keepaliveMs;
    this.keepaliveMs = keepaliveMs;
    this.body = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.controller = controller;
        },
        // The reader caught up with everything queued: a stream waiting to end can end now.
        pull: () => {
          if (this.ending) this.end();
        },
        cancel: () => this.teardown(),
      },
      // Count the queue in bytes, and queue nothing ahead of the reader: desiredSize is then minus the unread bytes.
      { highWaterMark: 0, size: (chunk) => chunk.byteLength },
    );
    options.observer?.opened();
    this.timer = setTimeout(this.onTimer, keepaliveMs);
    if (signal.aborted) this.teardown();
    else signal.addEventListener("abort", this.onAbort, { once: true });
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Bytes the client has not read yet (the stream's own queue; the socket's buffer comes on top). */
  get backlog(): number {
    return this.closed ? 0 : -(this.controller.desiredSize ?? 0);
  }

  /** Writes `data: <json>\n\n` for each already-serialised JSON text, in one enqueue. */
  data(...jsonTexts: string[]): void {
    if (jsonTexts.length === 0) return;
    let frame = "";
    for (const json of jsonTexts) frame += `data: ${json}\n\n`;
    this.write(encoder.encode(frame));
  }

  done(): void {
    this.write(DONE);
  }

  /** Ends the response normally; output the client has not read yet gets `slowClientMs` to be read. */
  close(): void {
    if (this.closed) return;
    this.dispose();
    if (this.backlogBytes() > 0) {
      this.ending = true;
      this.drainTimer = setTimeout(() => this.giveUp(), this.options.slowClientMs);
    } else {
      this.end();
    }
  }

  private end(): void {
    this.ending = false;
    this.teardown();
    try {
      this.controller.close();
    } catch {
      // Already cancelled by the reader: nothing left to end.
    }
  }

  private write(bytes: Uint8Array): void {
    if (this.closed) return;
    this.lastWriteAt = Date.now();
    this.controller.enqueue(bytes);
    this.checkStall(this.lastWriteAt);
  }

  private backlogBytes(): number {
    return -(this.controller.desiredSize ?? 0);
  }

  private checkStall(now: number): void {
    if (this.backlogBytes() <= this.options.slowClientBytes) {
      this.stalledSince = undefined;
      return;
    }
    this.stalledSince ??= now;
    if (now - this.stalledSince >= this.options.slowClientMs) this.giveUp();
  }

  /** The client stopped reading: tell the owner, then tear the response down. */
  private giveUp(): void {
    const wasOpen = !this.closed;
    this.ending = false;
    this.teardown();
    if (wasOpen) this.options.onStall?.();
    if (this.options.destroyConnection) {
      this.options.destroyConnection();
      return;
    }
    try {
      this.controller.error(new Error("client too slow"));
    } catch {
      // Already errored or cancelled.
    }
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
    const now = Date.now();
    this.checkStall(now);
    if (this.closed) return;
    const idle = now - this.lastWriteAt;
    if (idle >= this.keepaliveMs) {
      this.write(KEEPALIVE);
      this.keepalivesSent += 1;
      this.options.observer?.keepalive();
      this.timer = setTimeout(this.onTimer, this.keepaliveMs);
    } else {
      this.timer = setTimeout(this.onTimer, this.keepaliveMs - idle);
    }
  };

  private readonly onAbort = (): void => this.teardown();

  private dispose(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
