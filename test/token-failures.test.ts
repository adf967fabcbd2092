// The table behind the worker-token ban, on a clock the test moves: who gets banned, for how long, and how much it
// remembers under a spray of addresses.
import { describe, expect, it } from "vitest";
import { addressKey, TokenFailureLimiter } from "../src/master/token-failures.js";

function limiter(options: { maxFailures?: number; periodMs?: number; maxAddresses?: number } = {}) {
  const clock = { now: 0 };
  const bans: string[] = [];
  const table = new TokenFailureLimiter({
    maxFailures: options.maxFailures ?? 5,
    periodMs: options.periodMs ?? 60_000,
    maxAddresses: options.maxAddresses ?? 10_000,
    onBanned: (address) => bans.push(address),
    now: () => clock.now,
  });
  return { table, clock, bans };
}

describe("wrong worker tokens per address", () => {
  it("ban an address at its fifth wrong token within the period, and no other address", () => {
    const { table, clock, bans } = limiter();
    for (let i = 0; i < 4; i++) {
      table.failed("10.0.0.1");
      clock.now += 1_000;
    }
    expect(table.isBanned("10.0.0.1")).toBe(false);

    table.failed("10.0.0.1");

    expect(table.isBanned("10.0.0.1")).toBe(true);
    expect(table.isBanned("10.0.0.2")).toBe(false);
    expect(bans).toEqual(["10.0.0.1"]);
  });

  it("forget wrong tokens older than the period", () => {
    const { table, clock } = limiter();
    for (let i = 0; i < 4; i++) table.failed("10.0.0.1");
    clock.now += 60_000;

    table.failed("10.0.0.1");

    expect(table.isBanned("10.0.0.1")).toBe(false);
  });

  it("end a ban after the period, report it once however many tokens fail during it, and never extend it", () => {
    const { table, clock, bans } = limiter({ maxFailures: 2 });
    table.failed("10.0.0.1");
    table.failed("10.0.0.1");
    clock.now += 30_000;
    for (let i = 0; i < 10; i++) table.failed("10.0.0.1");
    expect(bans).toEqual(["10.0.0.1"]);

    clock.now += 29_999;
    expect(table.isBanned("10.0.0.1")).toBe(true);
    clock.now += 1;
    expect(table.isBanned("10.0.0.1")).toBe(false);
  });

  it("never ban with a limit of 0", () => {
    const { table, bans } = limiter({ maxFailures: 0 });
    for (let i = 0; i < 100; i++) table.failed("10.0.0.1");

    expect(table.isBanned("10.0.0.1")).toBe(false);
    expect(bans).toEqual([]);
  });

  it("remember at most maxAddresses addresses under a spray, and forget them all once the period is over", () => {
    const { table, clock } = limiter({ maxAddresses: 1_000 });
    for (let i = 0; i < 25_000; i++) table.failed(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    expect(table.size).toBe(1_000);

    clock.now += 60_000;
    table.failed("192.0.2.1");

    expect(table.size).toBe(1);
  });

  it("count an IPv6 host by its /64, and an IPv4-mapped address as IPv4", () => {
    expect(addressKey("2001:db8:1:2:aaaa:bbbb:cccc:dddd")).toBe(addressKey("2001:db8:1:2::1"));
    expect(addressKey("2001:db8:1:2::1")).toBe("2001:db8:1:2::/64");
    expect(addressKey("2001:db8:1:3::1")).not.toBe(addressKey("2001:db8:1:2::1"));
    expect(addressKey("2001:DB8::1%eth0")).toBe("2001:db8:0:0::/64");
    expect(addressKey("::1")).toBe("0:0:0:0::/64");
    expect(addressKey("::ffff:127.0.0.1")).toBe("127.0.0.1");
    expect(addressKey("127.0.0.1")).toBe("127.0.0.1");

    const { table } = limiter({ maxFailures: 2 });
    table.failed("2001:db8:1:2::10");
    table.failed("2001:db8:1:2::20");
    expect(table.isBanned("2001:db8:1:2::30")).toBe(true);
  });
});
