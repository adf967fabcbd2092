// Connections that have not yet shown what they are (an HTTP socket before its first request, a worker before its
// Hello), with a cap: a flood of slow connections cannot hold every file descriptor and lock real clients out.

/** The grace period the coordinator gives a new connection: real clients speak within a round trip. */
export const PENDING_GRACE_MS = 1_000;

export interface PendingConnectionsOptions<T> {
  /** Pending connections allowed at once before the oldest are dropped. */
  max: number;
  /**
   * How long a connection may wait before it can be dropped for the cap. Real clients speak at once, but a burst of
   * them (a client pool growing, workers reconnecting together) may connect before any has been read.
   */
  graceMs: number;
  /** Ends a connection dropped for the cap. */
  drop(connection: T): void;
}

/**
 * Over the cap, the oldest pending connections are dropped once they have waited `graceMs`: a slow-loris flood then
 * churns through itself, while a client that sends its request (or Hello) at once gets through.
 */
export class PendingConnections<T> {
  /** When each pending connection arrived; a Map keeps them in arrival order, oldest first. */
  private readonly since = new Map<T, number>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly options: PendingConnectionsOptions<T>) {}

  get size(): number {
    return this.since.size;
  }

  add(connection: T): void {
    this.since.set(connection, Date.now());
    // A timer already waits for the oldest to come of age; newer connections cannot come of age before it.
    if (this.timer === undefined && !this.closed) this.enforce();
  }

  /** The connection showed itself (or closed): it no longer counts. */
  release(connection: T): void {
    this.since.delete(connection);
  }

  /** Stops the timer; the connections themselves belong to their server. */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private readonly enforce = (): void => {
    this.timer = undefined;
    const now = Date.now();
    for (const [connection, arrivedAt] of this.since) {
      if (this.since.size <= this.options.max) return;
      const waitMs = arrivedAt + this.options.graceMs - now;
      if (waitMs > 0) {
        this.timer = setTimeout(this.enforce, waitMs);
        return;
      }
      this.since.delete(connection);
      this.options.drop(connection);
    }
  };
}
