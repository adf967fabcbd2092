// Building the event list one feed() returns: adjacent text of the same kind is merged into one event.

import type { ParseEvent } from "./types.js";

export type TextKind = "content" | "reasoning";

/** Appends text as an event of `kind`, merging it into the previous event when that is of the same kind. */
export function appendText(out: ParseEvent[], kind: TextKind, text: string): void {
  if (text.length === 0) return;
  const last = out[out.length - 1];
  if (last !== undefined && last.kind === kind) {
    last.text += text;
    return;
  }
  out.push({ kind, text });
}
