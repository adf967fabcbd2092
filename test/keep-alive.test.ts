// Ollama's keep_alive values: seconds, Go durations, negative for ever; anything else is refused.
import { describe, expect, it } from "vitest";
import { keepAliveMs } from "../src/api/keep-alive.js";

describe("keepAliveMs", () => {
  it("reads seconds, durations and the for-ever values", () => {
    expect(keepAliveMs(undefined)).toBeUndefined();
    expect(keepAliveMs(0)).toBe(0);
    expect(keepAliveMs(30)).toBe(30_000);
    expect(keepAliveMs("0")).toBe(0);
    expect(keepAliveMs("45")).toBe(45_000);
    expect(keepAliveMs("5m")).toBe(300_000);
    expect(keepAliveMs("1h30m")).toBe(5_400_000);
    expect(keepAliveMs("1.5s")).toBe(1_500);
    expect(keepAliveMs("300ms")).toBe(300);
    expect(keepAliveMs(-1)).toBe(Number.POSITIVE_INFINITY);
    expect(keepAliveMs("-1m")).toBe(Number.POSITIVE_INFINITY);
  });

  it("refuses what is not a duration, naming keep_alive", () => {
    for (const bad of ["five minutes", "5 m", "m5", "", "1d", "1h-5m", true, null, [5], { minutes: 5 }]) {
      expect(() => keepAliveMs(bad), JSON.stringify(bad)).toThrow(expect.objectContaining({ param: "keep_alive" }));
    }
  });
});
