// Chunk-safe search for literal tags: finds whole tags and measures how much of a chunk's end might be the start of one.

export interface TagMatch {
  index: number;
  tag: string;
}

/**
 * Finds the earliest of a fixed set of literal tags, and how much trailing text must wait for the next chunk. It holds
 * no state between calls, so one finder per tag set serves every parser (`TagFinder.of`).
 */
export class TagFinder {
  private static readonly shared = new Map<string, TagFinder>();

  /** The finder for `tags`, built once (a parser is made per request; its regular expression need not be). */
  static of(tags: readonly string[]): TagFinder {
    const key = tags.join("\u0000");
    let finder = TagFinder.shared.get(key);
    if (!finder) {
      finder = new TagFinder(tags);
      TagFinder.shared.set(key, finder);
    }
    return finder;
  }

  readonly tags: readonly string[];
  private readonly single: string | undefined;
  private readonly pattern: RegExp;
  /** Characters a tag can start with: a chunk's tail without any of them cannot hold a partial tag. */
  private readonly firstCodes: readonly number[];
  private readonly longestPartial: number;

  constructor(tags: readonly string[]) {
    this.tags = tags;
    this.single = tags.length === 1 ? tags[0] : undefined;
    // Longest first, so that a tag that is a prefix of another never wins by accident.
    const alternatives = [...tags].sort((a, b) => b.length - a.length).map(escapeRegExp);
    this.pattern = new RegExp(alternatives.join("|"), "g");
    this.firstCodes = [...new Set(tags.map((tag) => tag.charCodeAt(0)))];
    this.longestPartial = Math.max(0, ...tags.map((tag) => tag.length - 1));
  }

  /** The first whole tag at or after `from`, or undefined. */
  find(text: string, from: number): TagMatch | undefined {
    if (this.single !== undefined) {
      const index = text.indexOf(this.single, from);
      return index === -1 ? undefined : { index, tag: this.single };
    }
    this.pattern.lastIndex = from;
    const match = this.pattern.exec(text);
    return match === null ? undefined : { index: match.index, tag: match[0] };
  }

  /** How many characters at the end of `text` (not before `from`) must wait: the longest proper prefix of a tag. */
  holdBack(text: string, from: number): number {
    for (let i = Math.max(from, text.length - this.longestPartial); i < text.length; i++) {
      if (!this.firstCodes.includes(text.charCodeAt(i))) continue;
      const n = text.length - i;
      for (const tag of this.tags) if (n < tag.length && endsWithPrefix(text, tag, n)) return n;
    }
    return 0;
  }
}

function endsWithPrefix(text: string, tag: string, n: number): boolean {
  const start = text.length - n;
  for (let i = 0; i < n; i++) {
    if (text.charCodeAt(start + i) !== tag.charCodeAt(i)) return false;
  }
  return true;
}

function escapeRegExp(literal: string): string {
  return literal.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
