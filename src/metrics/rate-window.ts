// Counts per wall-clock second over a sliding window: tokens/s now, and the series a sparkline draws.
// Buckets advance lazily on each add or read, so the window needs no timer.

export class RateWindow {
  private readonly counts: Float64Array;
  /** The second (epoch seconds) the newest bucket counts. */
  private newest: number;

  constructor(
    /** How many seconds of history are kept. */
    readonly seconds: number,
    private readonly now: () => number = Date.now,
  ) {
    this.counts = new Float64Array(seconds);
    this.newest = Math.floor(now() / 1000);
  }

  add(amount: number): void {
    const second = this.advance();
    this.counts[second % this.seconds] = (this.counts[second % this.seconds] ?? 0) + amount;
  }

  /** Mean per second over the last `window` complete seconds (the current, partial one is left out). */
  rate(window = 3): number {
    const series = this.series(window);
    let sum = 0;
    for (const count of series) sum += count;
    return series.length === 0 ? 0 : sum / series.length;
  }

  /** Counts of the last `length` complete seconds, oldest first (at most `seconds - 1` of them). */
  series(length = this.seconds - 1): number[] {
    const current = this.advance();
    const n = Math.min(length, this.seconds - 1);
    const out = new Array<number>(n);
    for (let i = 0; i < n; i++) {
      const second = current - n + i;
      out[i] = this.counts[second % this.seconds] ?? 0;
    }
    return out;
  }

  /** Moves the window to the current second, zeroing the buckets of the seconds that passed without counts. */
  private advance(): number {
    const current = Math.floor(this.now() / 1000);
    const passed = current - this.newest;
    if (passed > 0) {
      for (let i = 1; i <= Math.min(passed, this.seconds); i++) this.counts[(this.newest + i) % this.seconds] = 0;
      this.newest = current;
    }
    return this.newest;
  }
}
