// Connections that have not said what they want yet (no request's headers, no Hello) are capped: beyond the cap the
// oldest are dropped once they have waited a second, so a client or worker that speaks at once still gets in, and
// a burst of real ones connecting together is not mistaken for a flood.
import { afterEach, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import type { RunningCoordinator } from "../src/coordinator.js";
import { serveDefaults } from "../src/config.js";
import { CloseCode } from "../src/worker-protocol/index.js";
import { startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";
import { connectPeer, hello, type Peer } from "./support/peer.js";
import { parsePrometheusText, sampleValue } from "./support/prometheus-text.js";
import { connectRaw, type RawClient } from "./support/raw-http.js";

describe("pending connections", () => {
  let coordinator: RunningCoordinator | undefined;
  const rawClients: RawClient[] = [];
  const peers: Peer[] = [];
  const workers: TestWorker[] = [];

  afterEach(async () => {
    for (const client of rawClients.splice(0)) client.socket.destroy();
    for (const peer of peers.splice(0)) peer.socket.terminate();
    await Promise.all(workers.splice(0).map((w) => w.stop()));
    await coordinator?.close();
    coordinator = undefined;
  });

  /** A sample's value; 0 for a labelled counter never incremented (prom-client shows no series for it). */
  async function metric(name: string, labels: Record<string, string>): Promise<number> {
    const response = await fetch(`${coordinator?.url}/metrics`);
    return sampleValue(parsePrometheusText(await response.text()), name, labels) ?? 0;
  }

  it("are capped at 256 HTTP connections and 64 workers by default", () => {
    expect(serveDefaults()).toMatchObject({ maxPendingConnections: 256, maxPendingWorkers: 64 });
  });

  it("beyond --max-pending-connections, lose the oldest sockets without a request, and a new client is served", async () => {
    coordinator = await startTestCoordinator({ maxPendingConnections: 5 });
    for (let i = 0; i < 8; i++) {
      const client = await connectRaw(coordinator.url);
      client.socket.write("GET /hea");
      rawClients.push(client);
    }

    await Promise.all(rawClients.slice(0, 3).map((client) => client.closed));
    expect(rawClients.slice(3).map((client) => client.socket.destroyed)).toEqual([false, false, false, false, false]);
    const health = await fetch(`${coordinator.url}/health`);

    expect(health.status).toBe(200);
    expect(await metric("coordinator_pending_connections_dropped_total", { kind: "http" })).toBeGreaterThanOrEqual(3);
    expect(await metric("coordinator_pending_connections", { kind: "http" })).toBeLessThanOrEqual(5);
  });

  it("keep a burst of HTTP clients that connect together and send their requests a moment later, beyond the cap", async () => {
    coordinator = await startTestCoordinator({ maxPendingConnections: 2 });
    for (let i = 0; i < 40; i++) rawClients.push(await connectRaw(coordinator.url));

    for (const client of rawClients) client.socket.write("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    await Promise.all(rawClients.map((client) => client.closed));

    expect(rawClients.filter((client) => client.received().startsWith("HTTP/1.1 200 "))).toHaveLength(40);
    expect(await metric("coordinator_pending_connections_dropped_total", { kind: "http" })).toBe(0);
  });

  it("beyond --max-pending-workers, close the oldest worker connections without a Hello (1013), and a worker joins", async () => {
    coordinator = await startTestCoordinator({ maxPendingWorkers: 3 });
    for (let i = 0; i < 5; i++) peers.push(await connectPeer(coordinator));

    const turnedAway = await Promise.all(peers.slice(0, 2).map((peer) => peer.closed));
    expect(turnedAway.map((closed) => closed.code)).toEqual([CloseCode.tryAgainLater, CloseCode.tryAgainLater]);
    expect(peers.slice(2).map((peer) => peer.socket.readyState)).toEqual([WebSocket.OPEN, WebSocket.OPEN, WebSocket.OPEN]);
    workers.push(await startSimWorker(coordinator, { name: "real" }));

    expect(coordinator.master.snapshot().workers.map((w) => w.name)).toEqual(["real"]);
    expect(await metric("coordinator_pending_connections_dropped_total", { kind: "worker" })).toBeGreaterThanOrEqual(2);
  });

  it("keep a burst of workers that connect together and say Hello a moment later, beyond the cap", async () => {
    coordinator = await startTestCoordinator({ maxPendingWorkers: 2 });
    for (let i = 0; i < 12; i++) peers.push(await connectPeer(coordinator));

    for (const [i, peer] of peers.entries()) peer.socket.send(JSON.stringify(hello({ worker: { ...hello().worker, name: `burst-${i}` } })));
    await Promise.all(peers.map((peer) => peer.next("Welcome")));

    expect(coordinator.master.snapshot().workers).toHaveLength(12);
    expect(await metric("coordinator_pending_connections_dropped_total", { kind: "worker" })).toBe(0);
  });
});
