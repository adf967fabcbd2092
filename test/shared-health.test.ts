// Ejections and bans as records in a shared map (a local one here; over NATS in heads-health.test.ts):
// what a head writes, what every head hears and reads back, and what goes when.
import { afterEach, describe, expect, it, vi } from "vitest";
import { banKey, ejectionKey, type HealthRecord } from "../src/heads/health-record.js";
import { SharedHealth } from "../src/heads/shared-health.js";
import { encodeKey, LocalMap } from "../src/heads/shared-map.js";
import { silentLogger } from "../src/log.js";
import type { SharedEjection } from "../src/master/cluster/events.js";

/** Lets the background writes run (a local map's writes are microtasks). */
const written = () => new Promise((resolve) => setImmediate(resolve));

describe("shared worker health", () => {
  let health: SharedHealth | undefined;

  afterEach(async () => {
    await health?.close();
    health = undefined;
    vi.useRealTimers();
  });

  function start(map = new LocalMap<HealthRecord>(), headId = "head-a"): { map: LocalMap<HealthRecord>; health: SharedHealth; heard: SharedEjection[] } {
    health = new SharedHealth(map, headId, silentLogger);
    const heard: SharedEjection[] = [];
    health.onEjection((ejection) => heard.push(ejection));
    return { map, health, heard };
  }

  it("write an ejection under the worker's encoded name, which every listener (the writer's too) hears, until it ends", async () => {
    const { map, health, heard } = start();

    health.ejected({ name: "gpu/1", until: 5_000, ejections: 2 });
    await written();

    expect(map.get(`eject.${encodeKey("gpu/1")}`)?.value).toEqual({ v: 1, kind: "eject", worker: "gpu/1", until: 5_000, ejections: 2, by: "head-a" });
    expect(heard).toEqual([{ name: "gpu/1", until: 5_000, ejections: 2 }]);
    expect(health.current("gpu/1", 4_999)).toEqual({ name: "gpu/1", until: 5_000, ejections: 2 });
    expect(health.current("gpu/1", 5_000)).toBeUndefined();
    expect(health.current("gpu/2", 0)).toBeUndefined();
  });

  it("delete an ejection when a probe succeeds, but leave one written after the probe's head last saw it", async () => {
    const { map, health } = start();
    health.ejected({ name: "w", until: 5_000, ejections: 1 });
    await written();

    health.recovered("w");
    await written();
    expect(map.get(ejectionKey("w"))).toBeUndefined();

    health.ejected({ name: "w", until: 9_000, ejections: 2 });
    await written();
    health.recovered("w");
    // (another head ejects it again before the delete is written)
    await map.put(ejectionKey("w"), { v: 1, kind: "eject", worker: "w", until: 20_000, ejections: 3, by: "head-b" });
    await written();
    expect(map.get(ejectionKey("w"))?.value).toMatchObject({ until: 20_000, by: "head-b" });
  });

  it("believe no record filed under another worker's key", async () => {
    const { map, health, heard } = start();

    await map.put(ejectionKey("innocent"), { v: 1, kind: "eject", worker: "other", until: 9_000, ejections: 1, by: "head-b" });

    expect(heard).toEqual([]);
    expect(health.current("innocent", 0)).toBeUndefined();
    expect(health.current("other", 0)).toBeUndefined();
  });

  it("ban an address for every head until the ban ends, and no other address", async () => {
    const { map, health } = start();

    health.banned("10.0.0.1", 60_000, 5);
    await written();

    expect(map.get(banKey("10.0.0.1"))?.value).toEqual({ v: 1, kind: "ban", address: "10.0.0.1", until: 60_000, failures: 5, by: "head-a" });
    expect(health.isBanned("10.0.0.1", 59_999)).toBe(true);
    expect(health.isBanned("10.0.0.1", 60_000)).toBe(false);
    expect(health.isBanned("10.0.0.2", 0)).toBe(false);
  });

  it("delete the records this head wrote once they ended, and leave the other heads' to them", async () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval", "Date"], now: 0 });
    const { map, health } = start();
    health.banned("10.0.0.1", 1_000, 5);
    health.ejected({ name: "w", until: 20_000, ejections: 1 });
    await map.put(banKey("10.0.0.2"), { v: 1, kind: "ban", address: "10.0.0.2", until: 1_000, failures: 5, by: "head-b" });
    await written();

    vi.advanceTimersByTime(5_000);
    await written();

    expect(map.entries().map((entry) => entry.key).sort()).toEqual([banKey("10.0.0.2"), ejectionKey("w")].sort());
  });
});
