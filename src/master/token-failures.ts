// Wrong worker tokens counted per source address: after a few, the address is banned for a while, so the token
// cannot be guessed at network speed. No timers: entries expire when looked at, and the table has a cap.

export interface TokenFailureOptions {
  /** Wrong tokens from one address within `periodMs` that get it banned; 0: never ban. */
  maxFailures: number;
  /** How long a wrong token is remembered, and how long a ban lasts. */
  periodMs: number;
  /** Addresses remembered at once; beyond, the one that failed least recently is forgotten. */
  maxAddresses: number;
  /** An address was banned: called once per ban, not per attempt. */
  onBanned(address: string, failures: number): void;
  now?: () => number;
}

interface Entry {
  failures: number;
  /** When the current count began. */
  since: number;
  /** The latest failure: the table is kept in this order, oldest first. */
  last: number;
  bannedUntil: number;
}

export class TokenFailureLimiter {
  private readonly entries = new Map<string, Entry>();
  private readonly now: () => number;

  constructor(private readonly options: TokenFailureOptions) {
    this.now = options.now ?? Date.now;
  }

  /** Addresses remembered now (bounded by `maxAddresses`). */
  get size(): number {
    return this.entries.size;
  }

  isBanned(address: string): boolean {
    const entry = this.entries.get(addressKey(address));
    return entry !== undefined && entry.bannedUntil > this.now();
  }

  /** Counts a wrong token from `address`; the one that reaches `maxFailures` bans it for `periodMs`. */
  failed(address: string): void {
    const now = this.now();
    this.forgetExpired(now);
    const key = addressKey(address);
    const known = this.entries.get(key);
    const current = known && (now - known.since < this.options.periodMs || known.bannedUntil > now);
    const entry = known && current ? known : { failures: 0, since: now, last: now, bannedUntil: 0 };
    entry.failures += 1;
    entry.last = now;
    this.entries.delete(key);
    this.entries.set(key, entry);
    // A connection admitted before the ban may still fail during it: that neither extends the ban nor reports it again.
    if (this.options.maxFailures > 0 && entry.failures >= this.options.maxFailures && entry.bannedUntil <= now) {
      entry.bannedUntil = now + this.options.periodMs;
      this.options.onBanned(key, entry.failures);
    }
    const oldest = this.entries.keys().next();
    if (this.entries.size > this.options.maxAddresses && !oldest.done) this.entries.delete(oldest.value);
  }

  /** Entries are ordered by their latest failure, and none matters `periodMs` after it (a ban ends by then too). */
  private forgetExpired(now: number): void {
    for (const [key, entry] of this.entries) {
      if (now - entry.last < this.options.periodMs) return;
      this.entries.delete(key);
    }
  }
}

/**
 * The unit an address is counted in: an IPv4 address (also when IPv4-mapped), or an IPv6 address's /64 prefix, since
 * one host commonly holds a whole /64.
 */
export function addressKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped?.[1]) return mapped[1];
  if (!address.includes(":")) return address;
  const [head = "", tail] = address.replace(/%.*$/, "").toLowerCase().split("::");
  const groups = (part: string | undefined) => (part ? part.split(":").flatMap((g) => (g.includes(".") ? ["0", "0"] : [g])) : []);
  const left = groups(head);
  const right = groups(tail);
  const full = tail === undefined ? left : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill("0"), ...right];
  return `${full.slice(0, 4).map((g) => Number.parseInt(g, 16).toString(16)).join(":")}::/64`;
}
