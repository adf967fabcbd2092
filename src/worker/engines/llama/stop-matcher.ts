// Stop strings in streamed text: what may be sent now, where the reply ends, and which stop ended it.

interface Stop {
  text: string;
  /** One of the request's own stop strings (rather than a trigger of the chat template). */
  requested: boolean;
}

/** Finds stop strings in streamed text, holding back a tail that could still grow into one. */
export class StopMatcher {
  private held = "";
  stopped = false;
  /** The request's stop string that ended the text: undefined until one did, and when a chat template's trigger did. */
  stopSequence: string | undefined;
  private readonly stops: Stop[];

  /** `requested`: the request's stop strings; `triggers`: the chat template's own (they end the reply unnamed). */
  constructor(requested: readonly string[], triggers: readonly string[] = []) {
    this.stops = [
      ...requested.map((text) => ({ text, requested: true })),
      ...triggers.map((text) => ({ text, requested: false })),
    ].filter((stop) => stop.text !== "");
  }

  /**
   * Returns the text that is safe to send; once a stop string appears, the text from it on is dropped. Of stops
   * that appear, the earliest in the text ends it; at the same place, a requested one before a template trigger.
   */
  push(piece: string): { text: string; stopped: boolean } {
    if (this.stopped) return { text: "", stopped: true };
    const buffer = this.held + piece;
    let first: { stop: Stop; at: number } | undefined;
    for (const stop of this.stops) {
      const at = buffer.indexOf(stop.text);
      if (at >= 0 && (first === undefined || at < first.at)) first = { stop, at };
    }
    if (first !== undefined) {
      this.stopped = true;
      this.held = "";
      if (first.stop.requested) this.stopSequence = first.stop.text;
      return { text: buffer.slice(0, first.at), stopped: true };
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
    for (const { text: stop } of this.stops) {
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
