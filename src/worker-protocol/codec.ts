// Decoding and encoding of wire frames: JSON text, validated against the protocol schemas.
import type { z } from "zod";
import { MasterMessage, WorkerMessage } from "./messages.js";

export type Decoded<T> = { ok: true; message: T } | { ok: false; error: string };

function decodeWith<S extends z.ZodType>(schema: S, data: string): Decoded<z.infer<S>> {
  let json: unknown;
  try {
    json = JSON.parse(data);
  } catch {
    return { ok: false, error: "frame is not valid JSON" };
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? ` at ${issue.path.join(".")}` : "";
    return { ok: false, error: `invalid message${where}: ${issue?.message ?? "schema mismatch"}` };
  }
  return { ok: true, message: parsed.data };
}

/** Validate a frame a worker sent to the master. */
export function decodeWorkerMessage(data: string): Decoded<WorkerMessage> {
  return decodeWith(WorkerMessage, data);
}

/** Validate a frame the master sent to a worker. */
export function decodeMasterMessage(data: string): Decoded<MasterMessage> {
  return decodeWith(MasterMessage, data);
}

export function encode(message: WorkerMessage | MasterMessage): string {
  return JSON.stringify(message);
}
