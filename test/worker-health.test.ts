// Outlier ejection decisions for one worker (pure logic, with an explicit clock).
import { describe, expect, it } from "vitest";
import { WorkerHealth } from "../src/master/worker-health.js";

const policy = { failureThreshold: 3, baseEjectionMs: 1_000, maxEjectionMs: 5_000 };

describe("worker health", () => {
  it("ejects after the threshold of consecutive failures, and a success in between resets the count", () => {
    const health = new WorkerHealth(policy);
    health.failure(0);
    health.failure(0);
    health.success();
    health.failure(0);
    health.failure(0);
    expect(health.state).toBe("healthy");
    expect(health.failure(10)).toBe(true);
    expect(health.state).toBe("ejected");
    expect(health.ejectedUntil).toBe(1_010);
    expect(health.capacity(8)).toBe(0);
  });

  it("puts an ejected worker on probation with one slot once its time is up, and restores it on success", () => {
    const health = new WorkerHealth(policy);
    for (let i = 0; i < 3; i++) health.failure(0);
    expect(health.tick(999)).toBe(false);
    expect(health.tick(1_000)).toBe(true);
    expect(health.state).toBe("probation");
    expect(health.capacity(8)).toBe(1);
    expect(health.success()).toBe(true);
    expect(health.state).toBe("healthy");
    expect(health.capacity(8)).toBe(8);
  });

  it("ejects again for twice as long when the probe fails, up to the maximum", () => {
    const health = new WorkerHealth(policy);
    for (let i = 0; i < 3; i++) health.failure(0);
    const durations: number[] = [];
    let now = 0;
    for (let round = 0; round < 5; round++) {
      now = health.ejectedUntil;
      health.tick(now);
      expect(health.state).toBe("probation");
      health.failure(now);
      durations.push(health.ejectedUntil - now);
    }
    expect(durations).toEqual([2_000, 4_000, 5_000, 5_000, 5_000]);
  });
});
