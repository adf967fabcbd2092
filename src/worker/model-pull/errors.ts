// The ways a model pull fails, as one error type whose code the worker reports to the master.

export type PullErrorCode =
  /** Not a URL, or not http: or https:. */
  | "bad_url"
  /** The file name is not a plain `.gguf` name, or would land outside the models dir. */
  | "bad_path"
  /** A sha256 that is not 64 hex digits, or a header that cannot be sent. */
  | "bad_request"
  /** The final file is there already and is not the one asked for (or no sha256 was given to tell). */
  | "exists"
  /** This worker is pulling the same file already. */
  | "busy"
  /** The server answered with an error status (see `status`). */
  | "http_error"
  /** The server sent more bytes than it announced; the partial is deleted. */
  | "size_mismatch"
  /** The whole file arrived but its SHA-256 is not the one asked for; the partial is deleted. */
  | "checksum_mismatch"
  /** The connection kept dropping without getting further; the partial is kept for a later pull. */
  | "interrupted"
  /** Reading or writing the models dir failed (disk full, permissions). */
  | "io_error";

export class PullError extends Error {
  /** The HTTP status of an `http_error`. */
  readonly status: number | undefined;

  constructor(
    message: string,
    readonly code: PullErrorCode,
    options: { status?: number; cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
    this.status = options.status;
  }
}

/** Runs a file system operation, reporting its failure as an `io_error` that says what was being done. */
export async function io<T>(action: string, operation: Promise<T>): Promise<T> {
  try {
    return await operation;
  } catch (error) {
    throw new PullError(`could not ${action}: ${error instanceof Error ? error.message : String(error)}`, "io_error", { cause: error });
  }
}

/** The result of a file system operation, or undefined when the file it is about does not exist. */
export async function unlessMissing<T>(operation: Promise<T>): Promise<T | undefined> {
  try {
    return await operation;
  } catch (error) {
    if (error instanceof Error && "code" in error && error.code === "ENOENT") return undefined;
    throw error;
  }
}
