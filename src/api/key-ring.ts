// Every key a request may present: client and admin keys from flags and files (this head's own), and those added at
// run time through /v1/keys, kept in a SharedMap every head reads (docs/scaling.md §7). The map holds each key's
// SHA-256 digest and never the key, which is shown once, to the admin who added it.
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { z } from "zod";
import type { Logger } from "../log.js";
import { SharedConflict, type SharedEntry, type SharedMap, SharedUnavailable } from "../heads/shared-map.js";
import { InvalidRequestError } from "./errors.js";

/** The JetStream bucket of keys added at run time, with --nats. */
export const KEYS_BUCKET = "coordinator-keys";

/** What a key lets in: the inference routes (client), or those and the admin routes (admin). */
export const KeyKind = z.enum(["client", "admin"]);
export type KeyKind = z.infer<typeof KeyKind>;

/** The most characters of a key's label. */
export const MAX_LABEL_LENGTH = 128;

/** A key added at run time, as the map holds it under the key's digest. */
export const RuntimeKey = z.object({
  v: z.literal(1),
  id: z.string().regex(/^key_[0-9a-f]{16}$/),
  kind: KeyKind,
  label: z.string().max(MAX_LABEL_LENGTH).nullable(),
  createdAt: z.number().int().nonnegative(),
});
export type RuntimeKey = z.infer<typeof RuntimeKey>;

/** How new keys begin, so that one found in a log or a repository says where it is good. */
const KEY_PREFIX = "sk-coord-";

/** A create that finds the digest taken is a new key's digest colliding (practically never): try another this often. */
const CREATE_ATTEMPTS = 3;

function digest(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

/** The map key of `key`: its digest in hex. */
export function keyDigest(key: string): string {
  return digest(key).toString("hex");
}

/** A key's public id: enough of its digest to name it, too little to help guess it. */
export function keyId(digestHex: string): string {
  return `key_${digestHex.slice(0, 16)}`;
}

export interface StaticKeys {
  client: readonly string[];
  admin: readonly string[];
}

export interface KeyCounts {
  client: number;
  admin: number;
}

export class KeyRing {
  private readonly staticClient: readonly Buffer[];
  private readonly staticAdmin: readonly Buffer[];
  /** Runtime keys by digest (hex), current through the map's changes: a lookup per request, not a scan. */
  private readonly runtime = new Map<string, RuntimeKey>();
  private readonly stopListening: () => void;
  /** Adds and revocations, one at a time: each checks the rules below against what the one before left. */
  private writing: Promise<unknown> = Promise.resolve();

  constructor(
    keys: StaticKeys,
    private readonly map: SharedMap<RuntimeKey>,
    private readonly log: Logger,
  ) {
    this.staticClient = keys.client.map(digest);
    this.staticAdmin = keys.admin.map(digest);
    this.stopListening = map.onChange((key, entry) => this.apply(key, entry));
    for (const entry of map.entries()) this.apply(entry.key, entry);
  }

  /** Whether the runtime keys are known (with --nats: once the bucket's first snapshot is read). */
  get ready(): boolean {
    return this.map.ready;
  }

  /** No key at all, from flags, files or run time: every guarded route is open. */
  get open(): boolean {
    return this.staticClient.length === 0 && this.staticAdmin.length === 0 && this.runtime.size === 0;
  }

  /** Whether an admin key exists, from flags, files or run time. */
  get hasAdmin(): boolean {
    return this.staticAdmin.length > 0 || this.count("admin") > 0;
  }

  /** Keys from flags and files, by kind. */
  get configured(): KeyCounts {
    return { client: this.staticClient.length, admin: this.staticAdmin.length };
  }

  /** The kind of `key`, or undefined when it is none of ours. Flag and file keys are compared in constant time. */
  kindOf(key: string): KeyKind | undefined {
    const given = digest(key);
    if (isOneOf(given, this.staticAdmin)) return "admin";
    if (isOneOf(given, this.staticClient)) return "client";
    return this.runtime.get(given.toString("hex"))?.kind;
  }

  /** The keys added at run time, oldest first. */
  list(): RuntimeKey[] {
    return [...this.runtime.values()].sort((a, b) => a.createdAt - b.createdAt || a.id.localeCompare(b.id));
  }

  /**
   * Adds a key of `kind` and resolves to it with its record; the key itself is not kept anywhere. A client key needs
   * an admin key to exist first: with client keys and no admin key, admin routes are off, and this one with them.
   */
  add(kind: KeyKind, label: string | null): Promise<{ key: string; record: RuntimeKey }> {
    return this.serially(async () => {
      if (kind === "client" && !this.hasAdmin) {
        throw new InvalidRequestError(
          "Add an admin key first: with client keys but no admin key, admin routes (this one included) are off, and nobody could manage keys any more.",
          "kind",
          "admin_key_first",
          409,
        );
      }
      if (!this.map.writable) throw new SharedUnavailable("Adding a key");
      for (let attempt = 1; ; attempt++) {
        const key = KEY_PREFIX + randomBytes(32).toString("base64url");
        const hex = keyDigest(key);
        const record: RuntimeKey = { v: 1, id: keyId(hex), kind, label, createdAt: Date.now() };
        try {
          await this.map.create(hex, record);
          // The map tells every listener of its own writes too; applied here as well so the key works at once.
          this.runtime.set(hex, record);
          this.log.info({ id: record.id, kind, label }, "key added at run time");
          return { key, record };
        } catch (error) {
          if (!(error instanceof SharedConflict) || attempt >= CREATE_ATTEMPTS) throw error;
        }
      }
    });
  }

  /**
   * Revokes the runtime key `id`, on every head; undefined when there is none. The last admin key may not go while
   * client keys remain (admin routes would be off for good), unless flags or files still give one.
   */
  revoke(id: string): Promise<RuntimeKey | undefined> {
    return this.serially(async () => {
      for (let attempt = 1; ; attempt++) {
        const found = this.find(id);
        if (!found) return undefined;
        const { value: record } = found;
        if (record.kind === "admin" && this.count("admin") === 1 && this.staticAdmin.length === 0 && this.clientCount() > 0) {
          throw new InvalidRequestError(
            "This is the last admin key, and client keys remain: without it admin routes would be off for good. Revoke the client keys first, or add another admin key.",
            "id",
            "last_admin_key",
            409,
          );
        }
        if (!this.map.writable) throw new SharedUnavailable("Revoking a key");
        try {
          await this.map.delete(found.key, found.revision);
          this.runtime.delete(found.key);
          this.log.info({ id: record.id, kind: record.kind }, "key revoked");
          return record;
        } catch (error) {
          // Written again meanwhile (by another head): look again.
          if (!(error instanceof SharedConflict) || attempt >= CREATE_ATTEMPTS) throw error;
        }
      }
    });
  }

  /** Stops following the map (which its owner closes). */
  close(): void {
    this.stopListening();
  }

  private find(id: string): SharedEntry<RuntimeKey> | undefined {
    for (const [hex, record] of this.runtime) {
      if (record.id !== id) continue;
      const entry = this.map.get(hex);
      if (entry) return entry;
    }
    return undefined;
  }

  private count(kind: KeyKind): number {
    let n = 0;
    for (const record of this.runtime.values()) if (record.kind === kind) n++;
    return n;
  }

  private clientCount(): number {
    return this.staticClient.length + this.count("client");
  }

  private apply(hex: string, entry: SharedEntry<RuntimeKey> | undefined): void {
    if (!entry) {
      this.runtime.delete(hex);
      return;
    }
    // The id names the digest it is part of; another (written by hand into the bucket) would make revocation by id
    // ambiguous.
    if (entry.value.id !== keyId(hex)) {
      this.log.warn({ digest: hex.slice(0, 16), id: entry.value.id }, "ignoring a runtime key whose id does not match its digest");
      this.runtime.delete(hex);
      return;
    }
    this.runtime.set(hex, entry.value);
  }

  private serially<T>(work: () => Promise<T>): Promise<T> {
    const next = this.writing.then(work);
    this.writing = next.catch(() => undefined);
    return next;
  }
}

/** Whether `given` is one of `digests`, compared in constant time against each. */
function isOneOf(given: Buffer, digests: readonly Buffer[]): boolean {
  let ok = false;
  for (const known of digests) ok = timingSafeEqual(given, known) || ok;
  return ok;
}
