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

/**
 * One SSE response body. Writes are synchronous enqueues; a keepalive comment goes out whenever nothing was
 * written for `keepaliveMs`. The stream closes itself, and drops its timer, when the client goes away
 * (`signal`) or when `close()` is called.
 */
export class SseStream {
  readonly body: ReadableStream<Uint8Array>;
  private controller!: ReadableStreamDefaultController<Uint8Array>;
  private lastWriteAt = Date.now();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  keepalivesSent = 0;

  constructor(
    private readonly keepaliveMs: number,
    private readonly signal: AbortSignal,
  ) {
    this.body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.controller = controller;
      },
      cancel: () => this.dispose(),
    });
    this.timer = setTimeout(this.onTimer, keepaliveMs);
    if (signal.aborted) this.dispose();
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

  /** Ends the response normally. */
  close(): void {
    if (this.closed) return;
    this.dispose();
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
  }

  private readonly onTimer = (): void => {
    if (this.closed) return;
    const idle = Date.now() - this.lastWriteAt;
    if (idle >= this.keepaliveMs) {
      this.write(KEEPALIVE);
      this.keepalivesSent += 1;
      this.timer = setTimeout(this.onTimer, this.keepaliveMs);
    } else {
      this.timer = setTimeout(this.onTimer, this.keepaliveMs - idle);
    }
  };

  private readonly onAbort = (): void => this.dispose();

  private dispose(): void {
    this.signal.removeEventListener("abort", this.onAbort);
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
