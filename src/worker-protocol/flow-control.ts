// Flow control of task output: how much a TokenChunk counts against its task's window (both sides agree on it).
import type { TokenLogprob } from "./messages.js";

/** What a logprob entry costs besides its text: its number and the JSON around it, counted the same on both sides. */
const ENTRY_OVERHEAD = 48;

/**
 * A chunk's size against the window: the UTF-8 bytes of its text (an empty text counting as 1), plus its logprobs,
 * which can outweigh the text a hundredfold (twenty alternatives per token): each entry and alternative costs its
 * token's UTF-8 bytes, four per listed byte, and ENTRY_OVERHEAD. Computed from the fields, not from a serialisation,
 * so the worker and the master (which parses the chunk) arrive at the same figure.
 */
export function chunkCost(text: string, logprobs?: readonly TokenLogprob[]): number {
  let cost = text.length === 0 ? 1 : Buffer.byteLength(text, "utf8");
  if (logprobs) for (const entry of logprobs) cost += logprobsCost(entry);
  return cost;
}

function logprobsCost(entry: TokenLogprob): number {
  let cost = ENTRY_OVERHEAD + Buffer.byteLength(entry.token, "utf8") + 4 * (entry.bytes?.length ?? 0);
  for (const top of entry.top ?? []) cost += ENTRY_OVERHEAD + Buffer.byteLength(top.token, "utf8") + 4 * (top.bytes?.length ?? 0);
  return cost;
}
