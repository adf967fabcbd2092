// Chunk-safe search for literal tags: finds whole tags and measures how much of a chunk's end might be the start of one.

export interface TagMatch {
  index: number;
  tag: string;
}

/** Finds the earliest of a fixed set of literal tags, and how much trailing text must wait for the next chunk. */
export class TagFinder {
  readonly tags: readonly string[];
  private readonly pattern: RegExp;

  constructor(tags: readonly string[]) {
    this.tags = tags;
    // Longest first, so that a tag that is a prefix of another never wins by accident.
    const alternatives = [...tags].sort((a, b) => b.length - a.length).map(escapeRegExp);
    this.pattern = new RegExp(alternatives.join("|"), "g");
  }

  /** The first whole tag at or after `from`, or undefined. */
  find(text: string, from: number): TagMatch | undefined {
    this.pattern.lastIndex = from;
    const match = this.pattern.exec(text);
    return match === null ? undefined : { index: match.index, tag: match[0] };
  }

  /** How many characters at the end of `text` (not before `from`) must wait: the longest proper prefix of a tag. */
  holdBack(text: string, from: number): number {
    return partialTagLength(text, this.tags, from);
  }
}

/** Length of the longest suffix of `text[from..]` that is a proper prefix of one of `tags`. */
export function partialTagLength(text: string, tags: readonly string[], from: number): number {
  let longest = 0;
  for (const tag of tags) {
    const max = Math.min(tag.length - 1, text.length - from);
    for (let n = max; n > longest; n--) {
      if (endsWithPrefix(text, tag, n)) {
        longest = n;
        break;
      }
    }
  }
  return longest;
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
