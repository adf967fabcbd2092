// One line kept at the bottom of a terminal and redrawn in place; log lines written through it appear above it.

const CLEAR_LINE = "\r\x1b[2K";

export class StatusLine {
  private text = "";
  private stopped = false;

  constructor(private readonly out: NodeJS.WriteStream) {}

  /** A log destination: each line clears the status, is written, and the status is drawn again below it. */
  readonly destination = {
    isTTY: true,
    write: (line: string): void => {
      if (this.stopped) {
        this.out.write(line);
        return;
      }
      this.out.write(CLEAR_LINE + line);
      this.draw();
    },
  };

  set(text: string): void {
    if (this.stopped || text === this.text) return;
    this.text = text;
    this.draw();
  }

  /** Removes the line for good; later log lines are written as they come. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.out.write(CLEAR_LINE);
  }

  private draw(): void {
    const width = Math.max(20, (this.out.columns ?? 100) - 1);
    this.out.write(CLEAR_LINE + fit(this.text, width));
  }
}

/** Cuts `text` to `width` visible characters, leaving ANSI colour codes whole. */
function fit(text: string, width: number): string {
  let visible = 0;
  let out = "";
  for (let i = 0; i < text.length; i++) {
    if (text[i] === "\x1b") {
      const end = text.indexOf("m", i);
      if (end > 0) {
        out += text.slice(i, end + 1);
        i = end;
        continue;
      }
    }
    if (visible === width) return `${out}\x1b[0m`;
    out += text[i];
    visible++;
  }
  return out;
}
