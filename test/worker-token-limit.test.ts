// Wrong worker tokens are rate-limited per source address: after a few, the address is turned away (close 1013)
// before its Hello is read, logged once per ban and counted in /metrics; other addresses, and the same one once
// the ban is over, still join.
import { afterEach, describe, expect, it } from "vitest";
import { serveDefaults } from "../src/config.js";
import { type RunningCoordinator, startCoordinator } from "../src/coordinator.js";
import { createLogger, silentLogger } from "../src/log.js";
import { CloseCode } from "../src/worker-protocol/index.js";
import { defaultSimulatorOptions, SimulatorEngine } from "../src/worker/engines/simulator.js";
import { WorkerRuntime } from "../src/worker/runtime.js";
import { TEST_TOKEN } from "./support/cluster.js";
import { connectPeer, hello, type Peer } from "./support/peer.js";
import { parsePrometheusText, sampleValue } from "./support/prometheus-text.js";

const WRONG = "not-the-token-123";

describe("wrong worker tokens", () => {
  let coordinator: RunningCoordinator | undefined;
  const logLines: Array<Record<string, unknown>> = [];
  const peers: Peer[] = [];
  let runtime: WorkerRuntime | undefined;

  afterEach(async () => {
    for (const peer of peers.splice(0)) peer.socket.terminate();
    await runtime?.stop();
    runtime = undefined;
    await coordinator?.close();
    coordinator = undefined;
    logLines.length = 0;
  });

  async function start(overrides: Parameters<typeof serveDefaults>[0] = {}): Promise<RunningCoordinator> {
    const log = createLogger("warn", "coordinator", {
      format: "json",
      destination: { write: (line: string) => void logLines.push(JSON.parse(line) as Record<string, unknown>) },
    });
    coordinator = await startCoordinator(serveDefaults({ host: "127.0.0.1", port: 0, workerToken: TEST_TOKEN, ...overrides }), log);
    return coordinator;
  }

  /** Says Hello with `token` from `localAddress`; resolves with how the master answered. */
  async function join(target: RunningCoordinator, token: string, localAddress = "127.0.0.1") {
    const peer = await connectPeer(target, { localAddress });
    peers.push(peer);
    peer.socket.send(JSON.stringify(hello({ token })));
    const closedOrWelcomed = await Promise.race([peer.closed, peer.next("Welcome").then(() => "welcomed" as const)]);
    return closedOrWelcomed === "welcomed" ? "welcomed" : closedOrWelcomed.code;
  }

  async function metric(target: RunningCoordinator, name: string): Promise<number> {
    const text = await (await fetch(`${target.url}/metrics`)).text();
    return sampleValue(parsePrometheusText(text), name) ?? 0;
  }

  it("allow 5 wrong tokens a minute from one address by default", () => {
    expect(serveDefaults()).toMatchObject({ workerTokenFailures: 5, workerBanMs: 60_000 });
  });

  it("turn an address away after 5, the right token too and without reading it, and still let other addresses join", async () => {
    const target = await start();
    for (let i = 0; i < 5; i++) expect(await join(target, WRONG)).toBe(CloseCode.unauthorized);

    for (let i = 0; i < 3; i++) expect(await join(target, TEST_TOKEN)).toBe(CloseCode.tryAgainLater);
    expect(peers.at(-1)?.received).toEqual([]);
    expect(await join(target, TEST_TOKEN, "127.0.0.2")).toBe("welcomed");

    expect(await metric(target, "coordinator_worker_auth_failures_total")).toBe(5);
    expect(await metric(target, "coordinator_worker_auth_bans_total")).toBe(1);
    expect(await metric(target, "coordinator_worker_auth_banned_refusals_total")).toBe(3);
    const banLines = logLines.filter((line) => String(line.msg).includes("too many wrong worker tokens"));
    expect(banLines).toHaveLength(1);
    expect(banLines[0]).toMatchObject({ address: "127.0.0.1", failures: 5, level: 40 });
    expect(JSON.stringify(logLines)).not.toContain(WRONG);
  });

  it("let the address in again once --worker-ban-ms is over: a worker turned away meanwhile reconnects and joins", async () => {
    const target = await start({ workerTokenFailures: 2, workerBanMs: 1_500 });
    expect(await join(target, WRONG)).toBe(CloseCode.unauthorized);
    expect(await join(target, WRONG)).toBe(CloseCode.unauthorized);
    const bannedAt = Date.now();

    const engine = new SimulatorEngine([], defaultSimulatorOptions);
    runtime = new WorkerRuntime(engine, await engine.start(), {
      join: target.workerUrl,
      token: TEST_TOKEN,
      name: "patient",
      maxConcurrency: 1,
      reconnect: true,
      log: silentLogger,
    });
    await runtime.start();

    expect(Date.now() - bannedAt).toBeGreaterThanOrEqual(1_400);
    expect(await metric(target, "coordinator_worker_auth_banned_refusals_total")).toBeGreaterThanOrEqual(1);
    expect(target.master.snapshot().workers.map((w) => w.name)).toEqual(["patient"]);
  });
});
