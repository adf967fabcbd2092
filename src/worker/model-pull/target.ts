// Where a pulled model goes: a plain `.gguf` file name (given, or the URL's last path segment) inside the models
// dir, and beside it the partial download and its note, which never carry the final name.
import path from "node:path";
import { PullError } from "./errors.js";

export interface PullTarget {
  fileName: string;
  /** The final file: it appears only by the rename of a whole, verified download. */
  path: string;
  /** The bytes received so far. */
  partialPath: string;
  /** What the partial was received from (see partial.ts), so that only the same remote file is resumed. */
  notePath: string;
}

/** Leaves room within the usual 255-byte limit of a name for the partial's suffixes. */
const MAX_NAME_BYTES = 200;

/** Path separators, the characters Windows refuses in names (a drive's colon among them), control characters and NUL. */
const FORBIDDEN_CHARACTERS = /[/\\:*?"<>|\u0000-\u001f\u007f]/;

/** Parses the URL to pull from; only http: and https: are fetched. */
export function pullUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new PullError(`not a URL: ${JSON.stringify(raw)}`, "bad_url");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw new PullError(`only http and https URLs can be pulled, not ${url.protocol}`, "bad_url");
  return url;
}

/** The target of a pull into `dir`: `fileName`, or the URL's last path segment (a Hugging Face resolve URL ends with the file's name). */
export function pullTarget(url: URL, dir: string, fileName?: string): PullTarget {
  const name = fileName ?? lastSegment(url);
  checkFileName(name);
  const root = path.resolve(dir);
  const file = path.resolve(root, name);
  // Redundant after checkFileName, and kept: whatever a name looks like, what counts is where it resolves.
  if (path.relative(root, file) !== name) throw new PullError(`${JSON.stringify(name)} resolves outside the models dir`, "bad_path");
  return { fileName: name, path: file, partialPath: `${file}.partial`, notePath: `${file}.partial.json` };
}

function lastSegment(url: URL): string {
  const segment = url.pathname.slice(url.pathname.lastIndexOf("/") + 1);
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new PullError(`the URL's file name is not valid percent-encoding: ${segment}`, "bad_path");
  }
}

/** A plain file name: one path segment, not hidden (which also rules out `.` and `..`), ending in `.gguf`. */
function checkFileName(name: string): void {
  const refuse = (why: string) => new PullError(`${JSON.stringify(name)} is not a model file name: ${why}`, "bad_path");
  if (FORBIDDEN_CHARACTERS.test(name)) throw refuse("it holds a path separator or a control or reserved character");
  if (name.startsWith(".")) throw refuse("it starts with a dot");
  if (!name.endsWith(".gguf")) throw refuse("it does not end in .gguf");
  if (Buffer.byteLength(name) > MAX_NAME_BYTES) throw refuse(`it is longer than ${MAX_NAME_BYTES} bytes`);
}
