// Which free context sequence a new prompt goes to: the prompt cache's placement rule, pure so that it is easy to test.

/** A free sequence as the rule sees it. */
export interface SequenceCandidate {
  /** Tokens it holds (0: empty, or not made yet). */
  held: number;
  /** Of those, how many the new prompt starts with. */
  shared: number;
  /** The length of the prompt it last served (what it holds beyond that is that task's reply); 0 if none. */
  prompt: number;
  /** When a task last took it; higher is more recent. */
  usedAt: number;
}

/**
 * The index of the candidate to take:
 * 1. among those worth reusing, the one sharing the longest prefix with the new prompt (then the one throwing away
 *    least, then the least recently used). Worth reusing: the new prompt starts with the whole prompt the sequence
 *    last served (a conversation's next turn: what it throws away is its last reply, which the chat template may
 *    render differently), or shares at least as many tokens as it throws away (the same long system prompt);
 * 2. else an empty one: a prompt that shares only a chat template's first few tokens must not evict a conversation;
 * 3. else the least recently used, whose cache is evicted (down to what it shares).
 */
export function chooseSequence(candidates: readonly SequenceCandidate[]): number {
  if (candidates.length === 0) throw new Error("no candidate sequence");
  const indexed = candidates.map((candidate, index) => ({ ...candidate, index }));
  const [reuse] = indexed.filter(worthReusing).sort((a, b) => b.shared - a.shared || a.held - b.held || a.usedAt - b.usedAt);
  if (reuse) return reuse.index;
  const empty = indexed.find((candidate) => candidate.held === 0);
  if (empty) return empty.index;
  const [oldest] = indexed.sort((a, b) => a.usedAt - b.usedAt);
  return oldest?.index ?? 0;
}

function worthReusing({ held, shared, prompt }: SequenceCandidate): boolean {
  return shared > 0 && ((prompt > 0 && shared >= prompt) || shared >= held - shared);
}
