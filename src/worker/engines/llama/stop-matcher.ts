// Stop strings in streamed text: what may be sent now, and where the reply ends.

/** Finds stop strings in streamed text, holding back a tail that could still grow into one. */
export class StopMatcher {
  private held = "";
  stopped = false;
  private readonly stops: string[];

  constructor(stops: readonly string[]) {
    this.stops = stops.filter((stop) => stop !== "");
  }

  /** Returns the text that is safe to send; once a stop string appears, the text from it on is dropped. */
  push(piece: string): { text: string; stopped: boolean } {
    if (this.stopped) return { text: "", stopped: true };
    const buffer = this.held + piece;
    const at = Math.min(...this.stops.map((stop) => buffer.indexOf(stop)).filter((index) => index >= 0));
    if (Number.isFinite(at)) {
      this.stopped = true;
      this.held = "";
      return { text: buffer.slice(0, at), stopped: true };
    }
    const keep = this.partialStopLength(buffer);
    this.held = buffer.slice(buffer.length - keep);
    return { text: buffer.slice(0, buffer.length - keep), stopped: false };
  }

  flush(): string {
    const rest = this.held;
    this.held = "";
    return rest;
  }

  /** Length of the longest end of `buffer` that is the beginning of a stop string. */
  private partialStopLength(buffer: string): number {
    let keep = 0;
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, buffer.length); n > keep; n--) {
        if (buffer.endsWith(stop.slice(0, n))) {
          keep = n;
          break;
        }
      }
    }
    return keep;
  }
}
