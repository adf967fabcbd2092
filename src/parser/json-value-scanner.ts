// Finds where one JSON value ends in streamed text, tracking only nesting and strings (validity is checked later).

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;

type Shape = "unknown" | "nested" | "string" | "bare";

/** Scans one JSON value across chunks; the value must start at the first character it is given. */
export class JsonValueScanner {
  private shape: Shape = "unknown";
  private depth = 0;
  private inString = false;
  private escaped = false;

  reset(): void {
    this.shape = "unknown";
    this.depth = 0;
    this.inString = false;
    this.escaped = false;
  }

  /** True once the value is known to be a string literal (as opposed to an object, array, number, …). */
  get isString(): boolean {
    return this.shape === "string";
  }

  /**
   * Scans from `pos`; returns the index just past the value when it ends in `text`, or -1 when it goes on.
   * A bare value (number, true, …) ends before the first character that cannot belong to it.
   */
  scan(text: string, pos: number): number {
    let i = pos;
    if (this.shape === "unknown" && i < text.length) {
      const first = text.charCodeAt(i);
      if (first === OPEN_BRACE || first === OPEN_BRACKET) this.shape = "nested";
      else if (first === QUOTE) {
        this.shape = "string";
        this.inString = true;
        i++;
      } else this.shape = "bare";
    }
    for (; i < text.length; i++) {
      const code = text.charCodeAt(i);
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (code === BACKSLASH) this.escaped = true;
        else if (code === QUOTE) {
          this.inString = false;
          if (this.shape === "string") return i + 1;
        }
        continue;
      }
      if (this.shape === "bare") {
        if (!isBareValueChar(code)) return i;
        continue;
      }
      if (code === QUOTE) this.inString = true;
      else if (code === OPEN_BRACE || code === OPEN_BRACKET) this.depth++;
      else if (code === CLOSE_BRACE || code === CLOSE_BRACKET) {
        this.depth--;
        if (this.depth === 0) return i + 1;
      }
    }
    return -1;
  }
}

/** Letters, digits, `+`, `-` and `.`: what numbers, true, false and null are made of. */
function isBareValueChar(code: number): boolean {
  return (
    (code >= 0x30 && code <= 0x39) ||
    (code >= 0x41 && code <= 0x5a) ||
    (code >= 0x61 && code <= 0x7a) ||
    code === 0x2b ||
    code === 0x2d ||
    code === 0x2e
  );
}

export function isJsonWhitespace(code: number): boolean {
  return code === 0x20 || code === 0x0a || code === 0x0d || code === 0x09;
}

/** Index of the first non-whitespace character at or after `pos` (text.length when there is none). */
export function skipJsonWhitespace(text: string, pos: number): number {
  let i = pos;
  while (i < text.length && isJsonWhitespace(text.charCodeAt(i))) i++;
  return i;
}
