// The key ring on its own: which kind a presented key is, whether the coordinator is open, the rules that keep admin
// routes reachable, and a runtime map that changes under it (as another head's writes do).
import { describe, expect, it } from "vitest";
import { InvalidRequestError } from "../src/api/errors.js";
import { KeyRing, keyDigest, keyId, RuntimeKey } from "../src/api/key-ring.js";
import { LocalMap, SharedConflict, type SharedListener, type SharedMap, SharedUnavailable } from "../src/heads/shared-map.js";
import { silentLogger } from "../src/log.js";

const CLIENT = "client-key-0001";
const ADMIN = "admin-key-00001";

function ring(keys: { client?: string[]; admin?: string[] } = {}, map: SharedMap<RuntimeKey> = new LocalMap<RuntimeKey>()) {
  return new KeyRing({ client: keys.client ?? [], admin: keys.admin ?? [] }, map, silentLogger);
}

async function refusal(promise: Promise<unknown>): Promise<InvalidRequestError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(InvalidRequestError);
  return error as InvalidRequestError;
}

/** A map whose first `collisions` creates find their key taken (by a write just before). */
class CollidingMap<T> extends LocalMap<T> {
  creates = 0;

  constructor(private collisions: number) {
    super();
  }

  override async create(key: string, value: T): Promise<number> {
    this.creates++;
    if (this.collisions-- > 0) throw new SharedConflict(key);
    return super.create(key, value);
  }
}

/** A map that has not read its snapshot yet and cannot be written (a head whose NATS is away), until told. */
class PendingMap<T> implements SharedMap<T> {
  ready = false;
  writable = false;
  private readonly inner = new LocalMap<T>();
  get = (key: string) => this.inner.get(key);
  entries = () => this.inner.entries();
  onChange = (listener: SharedListener<T>) => this.inner.onChange(listener);
  create = (key: string, value: T) => this.inner.create(key, value);
  update = (key: string, value: T, revision: number) => this.inner.update(key, value, revision);
  put = (key: string, value: T) => this.inner.put(key, value);
  delete = (key: string, revision?: number) => this.inner.delete(key, revision);
  close = () => this.inner.close();
}

describe("key ring", () => {
  it("tells each flag and file key's kind, and nothing else", () => {
    const keys = ring({ client: [CLIENT], admin: [ADMIN] });
    expect(keys.kindOf(CLIENT)).toBe("client");
    expect(keys.kindOf(ADMIN)).toBe("admin");
    expect(keys.kindOf(`${CLIENT}x`)).toBeUndefined();
    expect(keys.kindOf("")).toBeUndefined();
    expect(keys.open).toBe(false);
    expect(keys.configured).toEqual({ client: 1, admin: 1 });
  });

  it("adds a key that works at once, keeps only its digest, and lists it without the key", async () => {
    const map = new LocalMap<RuntimeKey>();
    const keys = ring({ admin: [ADMIN] }, map);

    const { key, record } = await keys.add("client", "ci");

    expect(key).toMatch(/^sk-coord-[A-Za-z0-9_-]{43}$/);
    expect(keys.kindOf(key)).toBe("client");
    expect(record).toEqual({ v: 1, id: keyId(keyDigest(key)), kind: "client", label: "ci", createdAt: expect.any(Number) });
    expect(map.entries().map((e) => e.key)).toEqual([keyDigest(key)]);
    expect(JSON.stringify(map.entries())).not.toContain(key);
    expect(keys.list()).toEqual([record]);
  });

  it("is open with no key at all, and closed once the first admin key is added", async () => {
    const keys = ring();
    expect(keys.open).toBe(true);
    const { key } = await keys.add("admin", null);
    expect(keys.open).toBe(false);
    expect(keys.kindOf(key)).toBe("admin");
    expect(keys.hasAdmin).toBe(true);
  });

  it("refuses a client key while no admin key exists (admin routes would be off for good)", async () => {
    const open = ring();
    expect((await refusal(open.add("client", null))).code).toBe("admin_key_first");
    const clientsOnly = ring({ client: [CLIENT] });
    expect(await refusal(clientsOnly.add("client", null))).toMatchObject({ status: 409, code: "admin_key_first", param: "kind" });
    expect(open.list()).toEqual([]);
  });

  it("refuses to revoke the last admin key while client keys remain, unless flags still give one", async () => {
    const keys = ring();
    const admin = await keys.add("admin", null);
    const client = await keys.add("client", null);

    expect(await refusal(keys.revoke(admin.record.id))).toMatchObject({ status: 409, code: "last_admin_key" });
    expect(keys.kindOf(admin.key)).toBe("admin");

    // Another admin key, then either may go; the last one again may not
    const second = await keys.add("admin", null);
    expect(await keys.revoke(admin.record.id)).toEqual(admin.record);
    expect((await refusal(keys.revoke(second.record.id))).code).toBe("last_admin_key");

    // Without client keys the last admin key may go: the coordinator is open again
    await keys.revoke(client.record.id);
    await keys.revoke(second.record.id);
    expect(keys.open).toBe(true);

    const withFlag = ring({ admin: [ADMIN] });
    const runtimeAdmin = await withFlag.add("admin", null);
    await withFlag.add("client", null);
    expect(await withFlag.revoke(runtimeAdmin.record.id)).toEqual(runtimeAdmin.record);
  });

  it("revokes by id, at once; an unknown id is undefined", async () => {
    const keys = ring({ admin: [ADMIN] });
    const { key, record } = await keys.add("client", null);
    expect(await keys.revoke("key_0000000000000000")).toBeUndefined();
    expect(await keys.revoke(record.id)).toEqual(record);
    expect(keys.kindOf(key)).toBeUndefined();
    expect(await keys.revoke(record.id)).toBeUndefined();
  });

  it("follows changes to the map made elsewhere (another head's writes)", async () => {
    const map = new LocalMap<RuntimeKey>();
    const keys = ring({}, map);
    const key = "sk-coord-written-by-another-head";
    const hex = keyDigest(key);

    await map.create(hex, { v: 1, id: keyId(hex), kind: "admin", label: null, createdAt: 1 });
    expect(keys.kindOf(key)).toBe("admin");
    expect(keys.open).toBe(false);

    await map.delete(hex);
    expect(keys.kindOf(key)).toBeUndefined();
    expect(keys.open).toBe(true);
  });

  it("takes the entries the map already holds, and ignores one whose id is not its digest's", async () => {
    const map = new LocalMap<RuntimeKey>();
    const good = keyDigest("sk-coord-good-one");
    const forged = keyDigest("sk-coord-forged");
    await map.create(good, { v: 1, id: keyId(good), kind: "client", label: null, createdAt: 1 });
    await map.create(forged, { v: 1, id: keyId(good), kind: "admin", label: null, createdAt: 2 });

    const keys = ring({}, map);

    expect(keys.kindOf("sk-coord-good-one")).toBe("client");
    expect(keys.kindOf("sk-coord-forged")).toBeUndefined();
    expect(keys.list().map((k) => k.id)).toEqual([keyId(good)]);
  });

  it("says it is not ready until the map is, and refuses writes the map cannot take", async () => {
    const map = new PendingMap<RuntimeKey>();
    const keys = ring({ admin: [ADMIN] }, map);
    expect(keys.ready).toBe(false);
    await expect(keys.add("admin", null)).rejects.toBeInstanceOf(SharedUnavailable);
    map.ready = true;
    expect(keys.ready).toBe(true);
  });

  it("retries a create whose digest is taken with a new key, and gives up after a few", async () => {
    const lucky = new CollidingMap<RuntimeKey>(2);
    const { key } = await ring({}, lucky).add("admin", null);
    expect(lucky.creates).toBe(3);
    expect(lucky.get(keyDigest(key))).toBeDefined();

    const unlucky = new CollidingMap<RuntimeKey>(3);
    await expect(ring({}, unlucky).add("admin", null)).rejects.toBeInstanceOf(SharedConflict);
    expect(unlucky.entries()).toEqual([]);
  });

  it("validates what it reads with its schema", () => {
    expect(RuntimeKey.safeParse({ v: 1, id: "key_0123456789abcdef", kind: "client", label: null, createdAt: 5 }).success).toBe(true);
    for (const bad of [
      { v: 2, id: "key_0123456789abcdef", kind: "client", label: null, createdAt: 5 },
      { v: 1, id: "key_0123", kind: "client", label: null, createdAt: 5 },
      { v: 1, id: "key_0123456789abcdef", kind: "root", label: null, createdAt: 5 },
      { v: 1, id: "key_0123456789abcdef", kind: "client", label: "x".repeat(129), createdAt: 5 },
    ]) {
      expect(RuntimeKey.safeParse(bad).success, JSON.stringify(bad)).toBe(false);
    }
  });
});
