// A pull's partial download on disk: the bytes received so far (`<name>.partial`) with their running SHA-256, and
// beside them a note of what they were received from (`<name>.partial.json`), so a later pull resumes only the same file.
import { createHash, type Hash } from "node:crypto";
import { constants } from "node:fs";
import { type FileHandle, open, readFile, rename, rm, writeFile } from "node:fs/promises";
import { z } from "zod";
import { io, unlessMissing } from "./errors.js";
import type { PullTarget } from "./target.js";

/** The note beside a partial: it is read back from disk, so it is parsed, and a note that does not parse means starting over. */
export const PartialSource = z.object({
  /** The URL the pull was asked for (not where it redirected: that may be a signed, short-lived address). */
  url: z.string(),
  /** A strong ETag or else the Last-Modified date, sent back as If-Range: a changed file then comes whole, not spliced. */
  validator: z.string().optional(),
  /** The whole file's size, as the server first announced it. */
  totalBytes: z.number().int().nonnegative().optional(),
});
export type PartialSource = z.infer<typeof PartialSource>;

/** Opened for appending, never through a symbolic link planted under the partial's name (where the platform can tell). */
const PARTIAL_FLAGS = constants.O_RDWR | constants.O_CREAT | constants.O_APPEND | (constants.O_NOFOLLOW ?? 0);

/** How much of a file is read at a time to hash it. */
const HASH_READ_BYTES = 1024 * 1024;

/** The partial file, open, and the SHA-256 of every byte in it. Owned by one pull, which closes it. */
export class PartialFile {
  private resumedBytes = false;
  private closed = false;

  private constructor(
    private readonly target: PullTarget,
    private readonly handle: FileHandle,
    private hash: Hash,
    private bytes: number,
    private origin: PartialSource | undefined,
  ) {}

  /**
   * Opens the partial of `target`, keeping what it holds when its note says it came from `url` (its bytes are hashed
   * again, which takes a while for a big file; `signal` stops that), and emptying it otherwise.
   */
  static async open(target: PullTarget, url: string, signal: AbortSignal): Promise<PartialFile> {
    const source = await readNote(target.notePath);
    const handle = await io(`open ${target.partialPath}`, open(target.partialPath, PARTIAL_FLAGS, 0o644));
    try {
      if (source?.url !== url) {
        await io(`empty ${target.partialPath}`, handle.truncate(0));
        return new PartialFile(target, handle, createHash("sha256"), 0, undefined);
      }
      const { hash, bytes } = await hashFile(handle, signal);
      return new PartialFile(target, handle, hash, bytes, source);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  get size(): number {
    return this.bytes;
  }

  /** What the bytes held were received from (none while it is empty, or after a restart without a usable answer). */
  get source(): PartialSource | undefined {
    return this.origin;
  }

  /** Whether the file went on from bytes received by an earlier request (a dropped one, or an earlier pull's). */
  get resumed(): boolean {
    return this.resumedBytes;
  }

  /** The server agreed to send the rest: what is held stays. */
  resume(): void {
    this.resumedBytes = true;
  }

  /** Empties the partial, to receive the file from its first byte; `source` is what it will now be received from. */
  async restart(source: PartialSource | undefined): Promise<void> {
    await io(`empty ${this.target.partialPath}`, this.handle.truncate(0));
    this.hash = createHash("sha256");
    this.bytes = 0;
    this.resumedBytes = false;
    this.origin = source;
    // The note goes first: bytes on disk are always described by the note beside them, or have none and are not kept.
    if (source) await io(`write ${this.target.notePath}`, writeFile(this.target.notePath, JSON.stringify(source)));
    else await io(`remove ${this.target.notePath}`, rm(this.target.notePath, { force: true }));
  }

  async append(bytes: Uint8Array): Promise<void> {
    await io(`write ${this.target.partialPath}`, this.handle.appendFile(bytes));
    this.hash.update(bytes);
    this.bytes += bytes.byteLength;
  }

  /** The SHA-256 of the bytes held, in hex. */
  sha256(): string {
    return this.hash.copy().digest("hex");
  }

  /** Gives the bytes their final name: flushed to disk first, so a crash cannot leave a short file under that name. */
  async commit(): Promise<void> {
    await io(`flush ${this.target.partialPath}`, this.handle.sync());
    await this.close();
    await io(`rename ${this.target.partialPath} to ${this.target.fileName}`, rename(this.target.partialPath, this.target.path));
    // After the rename: a crash between the two leaves a stray note, whereas the other order could lose a whole download.
    await io(`remove ${this.target.notePath}`, rm(this.target.notePath, { force: true }));
  }

  /** Closes the file; an empty partial (nothing worth resuming) is removed with its note. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await io(`close ${this.target.partialPath}`, this.handle.close());
    if (this.bytes > 0) return;
    await io(`remove ${this.target.partialPath}`, rm(this.target.partialPath, { force: true }));
    await io(`remove ${this.target.notePath}`, rm(this.target.notePath, { force: true }));
  }
}

/** The SHA-256 and size of everything in an open file; `signal` stops the reading between two reads. */
export async function hashFile(handle: FileHandle, signal: AbortSignal): Promise<{ hash: Hash; bytes: number }> {
  const hash = createHash("sha256");
  const buffer = Buffer.allocUnsafe(HASH_READ_BYTES);
  let bytes = 0;
  for (;;) {
    signal.throwIfAborted();
    const { bytesRead } = await io("read back a file to hash it", handle.read(buffer, 0, buffer.length, bytes));
    if (bytesRead === 0) return { hash, bytes };
    hash.update(buffer.subarray(0, bytesRead));
    bytes += bytesRead;
  }
}

async function readNote(notePath: string): Promise<PartialSource | undefined> {
  const text = await io(`read ${notePath}`, unlessMissing(readFile(notePath, "utf8")));
  if (text === undefined) return undefined;
  try {
    const parsed = PartialSource.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined; // not JSON: as unusable as a note that does not parse, and as harmless
  }
}
