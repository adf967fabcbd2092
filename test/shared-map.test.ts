// The seam for state heads share (src/heads/shared-map.ts): the same contract from the in-process map and from a
// JetStream bucket on a real nats-server, and what only the bucket does: a second head sees each write, a value that
// does not parse is ignored, the state read anew after nats-server restarts replaces the old one, writes while NATS
// is away fail at once, entries age out of a bucket with a max age, and nothing is left once it closes.
import { Kvm } from "@nats-io/kv";
import { connect } from "@nats-io/transport-node";
import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { silentLogger } from "../src/log.js";
import { isSupported, NatsLink } from "../src/heads/nats-link.js";
import { SharedBucket } from "../src/heads/shared-bucket.js";
import { LocalMap, SharedConflict, type SharedEntry, type SharedMap, SharedUnavailable } from "../src/heads/shared-map.js";
import { eventually } from "./support/cluster.js";
import { type NatsServer, startNatsServer } from "./support/nats.js";
import { settled, trackResources, type TrackedResources } from "./support/resources.js";

const Value = z.object({ v: z.literal(1), name: z.string() });
type Value = z.infer<typeof Value>;

function value(name: string): Value {
  return { v: 1, name };
}

/** What both implementations must do, run against a fresh map. */
async function contract(map: SharedMap<Value>): Promise<void> {
  const heard: Array<[string, string | undefined]> = [];
  const stop = map.onChange((key, entry) => heard.push([key, entry?.value.name]));
  expect(map.ready).toBe(true);
  const first = await map.create("a", value("one"));
  expect(map.get("a")).toMatchObject({ key: "a", value: value("one"), revision: first });
  await expect(map.create("a", value("again"))).rejects.toBeInstanceOf(SharedConflict);
  const second = await map.update("a", value("two"), first);
  expect(second).toBeGreaterThan(first);
  await expect(map.update("a", value("stale"), first)).rejects.toBeInstanceOf(SharedConflict);
  await map.put("b", value("bee"));
  expect(map.entries().map((entry) => entry.key).sort()).toEqual(["a", "b"]);
  await expect(map.delete("a", first)).rejects.toBeInstanceOf(SharedConflict);
  await map.delete("a", second);
  expect(map.get("a")).toBeUndefined();
  // A deleted key may be created again.
  const again = await map.create("a", value("three"));
  expect(again).toBeGreaterThan(second);
  await eventually(() => heard.length >= 5, "every change heard");
  expect(heard).toEqual([
    ["a", "one"],
    ["a", "two"],
    ["b", "bee"],
    ["a", undefined],
    ["a", "three"],
  ]);
  stop();
}

describe("the nats-server versions heads accept", () => {
  it("takes 2.9 and later (Debian 12 ships 2.9.10), and refuses older ones or nonsense", () => {
    expect(["2.9.10", "2.9.0", "2.10.1", "2.11.0-beta", "3.0.0"].map(isSupported)).toEqual([true, true, true, true, true]);
    expect(["2.8.4", "2.2.0", "1.4.1", "", "garbage"].map(isSupported)).toEqual([false, false, false, false, false]);
  });
});

describe("the shared map seam", () => {
  it("keeps the contract in process (one head, no NATS)", async () => {
    const map = new LocalMap<Value>();
    await contract(map);
    await map.close();
  });

  describe("over a JetStream bucket", () => {
    let nats: NatsServer | undefined;
    let resources: TrackedResources | undefined;
    const closers: Array<() => Promise<void>> = [];

    afterEach(async () => {
      for (const close of closers.splice(0).reverse()) await close();
      await nats?.stop();
      resources?.stop();
      nats = resources = undefined;
    });

    function link(): NatsLink {
      const made = new NatsLink([nats?.url ?? ""], silentLogger);
      made.start();
      closers.push(() => made.close());
      return made;
    }

    function bucket(on: NatsLink, name = "coordinator-test", maxAgeMs?: number): SharedBucket<Value> {
      const made = new SharedBucket(on, { name, what: "test values", schema: Value, ...(maxAgeMs !== undefined && { maxAgeMs }) }, silentLogger);
      closers.push(() => made.close());
      return made;
    }

    it("keeps the contract, shows each write to a second head, ignores values that do not parse, and leaves nothing", async () => {
      resources = trackResources();
      nats = await startNatsServer();
      const one = bucket(link());
      await eventually(() => one.ready, "the first snapshot read");
      const other = bucket(link());
      await eventually(() => other.ready, "the other head's snapshot read");
      await contract(one);
      await eventually(() => other.get("a")?.value.name === "three" && other.get("b")?.value.name === "bee", "the other head sees the writes");
      expect(other.get("a")?.revision).toBe(one.get("a")?.revision);

      // A value written behind the heads' backs that does not parse is not believed.
      const raw = await connect({ servers: nats.url });
      const kv = await new Kvm(raw).open("coordinator-test");
      await kv.put("b", JSON.stringify({ v: 2, name: 5 }));
      await kv.put("c", "not json");
      await kv.put("d", JSON.stringify(value("dee")));
      await eventually(() => other.get("d") !== undefined, "a valid write after them arrives");
      expect(other.get("b")).toBeUndefined();
      expect(other.get("c")).toBeUndefined();
      await raw.close();

      for (const close of closers.splice(0).reverse()) await close();
      await nats.stop();
      nats = undefined;
      await settled(resources);
    });

    it("reads the state anew after nats-server restarts, fails writes at once while it is away, and ages entries out", async () => {
      nats = await startNatsServer();
      const oneLink = link();
      const one = bucket(oneLink);
      const otherLink = link();
      const other = bucket(otherLink);
      await eventually(() => one.ready && other.ready, "both snapshots read");
      await one.put("kept", value("kept"));
      await one.put("gone", value("gone"));
      await eventually(() => other.get("gone") !== undefined, "the other head sees both keys");

      await nats.kill();
      await eventually(() => !one.writable, "the head notices NATS is away", 20_000);
      // The last state stays in force, and a write fails at once rather than waiting.
      expect(one.get("kept")?.value.name).toBe("kept");
      const started = Date.now();
      await expect(one.put("x", value("x"))).rejects.toBeInstanceOf(SharedUnavailable);
      expect(Date.now() - started).toBeLessThan(1_000);

      await nats.restart();
      await eventually(() => one.writable && other.writable, "both heads back on NATS", 20_000);
      // Both heads read and write again after the restart: the store kept the keys, and a delete by one reaches the other.
      await other.delete("gone");
      await eventually(() => one.get("gone") === undefined, "the delete reaches the first head");
      expect(one.get("kept")?.value.name).toBe("kept");

      // A bucket with a max age: an entry not written again is forgotten once that age has passed since it came.
      const aged = bucket(oneLink, "coordinator-test-aged", 1_500);
      const watcher = bucket(otherLink, "coordinator-test-aged", 1_500);
      await eventually(() => aged.ready && watcher.ready, "the aged bucket read");
      const gone: string[] = [];
      watcher.onChange((key, entry: SharedEntry<Value> | undefined) => entry === undefined && gone.push(key));
      await aged.put("brief", value("brief"));
      await eventually(() => watcher.get("brief") !== undefined, "the entry arrives");
      await eventually(() => gone.includes("brief") && watcher.get("brief") === undefined, "the entry ages out", 10_000);
    }, 60_000);
  });
});
