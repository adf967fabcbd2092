// Puts a coordinator together: master, HTTP API and the worker endpoint on one port, and the demo worker.
import { readFile } from "node:fs/promises";
import type { AddressInfo, Socket } from "node:net";
import type { Server } from "node:http";
import { WebSocketServer } from "ws";
import { createApp } from "./api/app.js";
import { createHttpServer } from "./api/http-server.js";
import { KEYS_BUCKET, KeyRing, RuntimeKey } from "./api/key-ring.js";
import { ApiKey, type ServeConfig } from "./config.js";
import { HEALTH_RECORD_MAX_AGE_MS, HealthRecord, WORKER_HEALTH_BUCKET } from "./heads/health-record.js";
import { HeadsDirectory } from "./heads/heads-directory.js";
import { LeaderChannel, SharedPlanning } from "./heads/leader-channel.js";
import { NatsLink } from "./heads/nats-link.js";
import { LoneLease, NatsLease, type PlannerLease } from "./heads/planner-lease.js";
import { SharedBucket, sharedMap } from "./heads/shared-bucket.js";
import { PLACEMENTS_BUCKET, type PlacementStore, PlacementValue, type Planning, soloPlanning } from "./master/placement/planning.js";
import { placementChange } from "./api/placements.js";
import { type Heads, type HeadSelf, LoneHead, newHeadId } from "./heads/heads.js";
import { SharedHealth } from "./heads/shared-health.js";
import { type Logger, silentLogger } from "./log.js";
import { Master } from "./master/master.js";
import { CacheSummaries } from "./master/routing/cache-summaries.js";
import { CACHE_BUCKET, CACHE_SUMMARY_MAX_AGE_MS, CacheSummary } from "./master/routing/cache-summary.js";
import { createPolicy, type PolicyName, type PolicyOptions, type RoutingPolicy } from "./master/routing/index.js";
import { ClusterActivity } from "./metrics/activity.js";
import { CoordinatorMetrics } from "./metrics/metrics.js";
import { WorkerAdmission } from "./master/worker-admission.js";
import { serveWorkerConnection } from "./master/worker-connection.js";
import { PENDING_GRACE_MS, PendingConnections } from "./pending-connections.js";
import { CloseCode, WORKER_PATH } from "./worker-protocol/index.js";
import { defaultSimulatorOptions, SimulatorEngine } from "./worker/engines/simulator.js";
import { closeSocket, WorkerRuntime, workerUrl as workerAddress } from "./worker/runtime.js";

export interface RunningCoordinator {
  /** http://host:port of the API. */
  url: string;
  /** ws://host:port of the worker endpoint (what `--join` takes). */
  workerUrl: string;
  port: number;
  master: Master;
  /** Answers a request in-process, without the network (for embedding and tests); streams are web streams then. */
  fetch(request: Request): Promise<Response>;
  /** Stops everything it started: demo worker, worker connections, HTTP server, timers. */
  close(): Promise<void>;
  /**
   * Graceful stop: refuses new requests (503), lets in-flight ones finish for up to `graceMs`, then cancels the
   * rest (TaskCancelled to their workers) and closes.
   */
  shutdown(graceMs: number): Promise<void>;
}

/** Keys given by flag plus the lines of a keys file (blank lines and # comments skipped), each validated. */
async function readKeys(given: readonly string[], file: string | undefined, flag: string): Promise<string[]> {
  const keys = [...given];
  if (file) {
    const text = await readFile(file, "utf8");
    for (const [index, line] of text.split(/\r?\n/).entries()) {
      const key = line.trim();
      if (!key || key.startsWith("#")) continue;
      const parsed = ApiKey.safeParse(key);
      if (!parsed.success) throw new Error(`${flag} ${file}, line ${index + 1}: ${parsed.error.issues[0]?.message}`);
      keys.push(parsed.data);
    }
  }
  return keys;
}

function listen(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    // A burst of new connections (a client pool growing under load) must not overflow Node's default accept queue
    // of 511: the kernel then drops their handshakes and each client waits a full second before trying again.
    server.listen({ port, host, backlog: 4096 }, () => {
      server.off("error", reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

/** What an embedder (a benchmark, a test) may put in place of the coordinator's own parts. */
export interface CoordinatorSeams {
  /** Makes each model's routing policy from its configured name (default: createPolicy). */
  createPolicy?(name: PolicyName): RoutingPolicy;
}

export async function startCoordinator(config: ServeConfig, log: Logger = silentLogger, seams: CoordinatorSeams = {}): Promise<RunningCoordinator> {
  const self: HeadSelf = {
    id: newHeadId(),
    name: config.headName,
    startedAt: Date.now(),
    inflight: () => master.liveTasks,
    queued: () => master.queuedTasks,
    workers: () => master.workerCount,
    planner: () => lease.holder()?.headId,
  };
  // Without --nats nothing is shared: the head knows itself only, as before.
  const nats = config.nats ? new NatsLink(config.nats, log.child({ component: "nats" })) : undefined;
  const heads: Heads = nats ? new HeadsDirectory(nats, self, log.child({ component: "heads" })) : new LoneHead(self);
  // One head plans placement: the only one, or the holder of the planner lease, which others' admin requests reach.
  const lease: PlannerLease = nats ? new NatsLease(nats, { leaseMs: config.natsLeaseMs }, log.child({ component: "lease" })) : new LoneLease();
  const leader = nats ? new LeaderChannel(nats, lease, log.child({ component: "leader" })) : undefined;
  const placements: PlacementStore = sharedMap(nats, { name: PLACEMENTS_BUCKET, what: "placements", schema: PlacementValue }, log.child({ component: "placements" }));
  const planning: Planning = leader ? new SharedPlanning(lease, leader, self.id, log.child({ component: "planning" })) : soloPlanning;
  // Ejections and wrong-token bans: every head's with NATS, this one's alone without.
  const healthLog = log.child({ component: "worker-health" });
  const healthRecords = sharedMap(nats, { name: WORKER_HEALTH_BUCKET, what: "worker ejections and bans", schema: HealthRecord, maxAgeMs: HEALTH_RECORD_MAX_AGE_MS }, healthLog);
  const sharedHealth = new SharedHealth(healthRecords, self.id, healthLog);
  const policyOf = (model: string): PolicyName => config.modelRouting.get(model) ?? config.routing;
  // What each head routed with the cache-aware policy, in hashes, for the others' policies; nothing without --nats.
  const cacheLog = log.child({ component: "cache-summaries" });
  const cacheMap = nats ? new SharedBucket(nats, { name: CACHE_BUCKET, what: "the cache summaries", schema: CacheSummary, maxAgeMs: CACHE_SUMMARY_MAX_AGE_MS }, cacheLog) : undefined;
  const summaries = cacheMap && new CacheSummaries(cacheMap, { headId: self.id, summarizes: (model) => policyOf(model) === "cache-aware" }, cacheLog);
  const policyOptions: PolicyOptions = summaries ? { cacheAware: { remote: summaries.hints } } : {};
  const master = new Master({
    queueMaxLength: config.queueMax,
    queueTimeoutMs: config.queueTimeoutMs,
    heartbeatIntervalMs: config.heartbeatMs,
    cancelAckTimeoutMs: config.cancelAckMs,
    maxAttempts: config.maxAttempts,
    maxLiveTasks: config.maxStreams,
    modelMemoryMs: 10 * 60_000,
    // Half the unread-output limit may wait in the master for the client, the other half in its socket.
    taskWindowBytes: Math.ceil(config.slowClientBytes / 2),
    taskStallMs: config.taskStallMs,
    healthPolicy: { failureThreshold: config.ejectAfterFailures, baseEjectionMs: config.ejectMs, maxEjectionMs: config.ejectMs * 10 },
    ejections: sharedHealth,
    placement: { autoLoad: !config.noAutoLoad, idleMs: config.modelIdleMs, maxReplicas: config.maxReplicas, replicaAfterMs: config.replicaAfterMs, loadTimeoutMs: config.modelLoadTimeoutMs },
    planning,
    placements,
    routing: { policyOf, create: (name) => seams.createPolicy?.(name) ?? createPolicy(name, policyOptions) },
    // With other heads, workers that ask are told of each (their worker address: the same port as the API).
    ...(config.nats && { heads: { list: () => heads.list().flatMap((head) => (head.url ? [workerAddress(head.url)] : [])), onChange: (listener) => heads.onChange(listener) } }),
    log,
  });
  const metrics = new CoordinatorMetrics(master);
  metrics.watchHeads(heads);
  if (summaries) metrics.watchCacheHints(() => summaries.hints.stats());
  const activity = new ClusterActivity(master, heads);
  const unobserve = [master.observers.add(metrics), master.observers.add(activity), ...(summaries ? [master.observers.add(summaries)] : [])];
  const closingFeeds = new AbortController();
  const staticKeys = {
    client: await readKeys(config.apiKey, config.apiKeysFile, "--api-keys-file"),
    admin: await readKeys(config.adminKey, config.adminKeysFile, "--admin-keys-file"),
  };
  // Keys added at run time: every head's through a bucket with --nats (their digests only), this head's alone without.
  const keysLog = log.child({ component: "keys" });
  const keyMap = sharedMap(nats, { name: KEYS_BUCKET, what: "the keys added at run time", schema: RuntimeKey }, keysLog);
  const keys = new KeyRing(staticKeys, keyMap, keysLog);
  const app = createApp(master, {
    reasoning: config.reasoning,
    reasoningField: config.reasoningField,
    keepaliveMs: config.keepaliveMs,
    modelFormats: config.modelFormat,
    limits: { maxMessages: config.maxMessages, maxPromptChars: config.maxPromptChars },
    slowClientMs: config.slowClientMs,
    slowClientBytes: config.slowClientBytes,
    maxReplyBytes: config.maxReplyBytes,
    keys,
    corsOrigins: config.corsOrigin,
    maxBodyBytes: config.maxBodyBytes,
    metrics,
    activity,
    closing: closingFeeds.signal,
    heads,
    ...(leader && { leader }),
    feedIntervalMs: config.feedIntervalMs,
    log,
  });
  const pendingSockets = new PendingConnections<Socket>({
    max: config.maxPendingConnections,
    graceMs: PENDING_GRACE_MS,
    drop: (socket) => {
      socket.destroy();
      metrics.pendingConnectionDropped("http");
    },
  });
  const admission = new WorkerAdmission({
    maxPending: config.maxPendingWorkers,
    maxTokenFailures: config.workerTokenFailures,
    banMs: config.workerBanMs,
    bans: sharedHealth,
    events: {
      pendingDropped: () => metrics.pendingConnectionDropped("worker"),
      tokenFailed: () => metrics.workerTokenFailed(),
      banned: (address, failures) => {
        metrics.workerAddressBanned();
        log.warn({ address, failures, banMs: config.workerBanMs }, "too many wrong worker tokens from one address; turning it away for a while");
      },
      bannedTurnedAway: () => metrics.workerBannedTurnedAway(),
    },
  });
  metrics.watchPending("http", () => pendingSockets.size);
  metrics.watchPending("worker", () => admission.pendingCount);
  const server = createHttpServer(app, {
    headersTimeoutMs: config.headersTimeoutMs,
    requestTimeoutMs: config.requestTimeoutMs,
    pending: pendingSockets,
  });
  const wss = new WebSocketServer({ noServer: true, maxPayload: config.maxWorkerPayload });
  wss.on("connection", (socket, request) => {
    const remoteAddress = request.socket.remoteAddress ?? "unknown";
    if (!admission.admit(socket, remoteAddress)) return;
    serveWorkerConnection(socket, master, {
      token: config.workerToken,
      handshakeTimeoutMs: config.helloTimeoutMs,
      heartbeatIntervalMs: config.heartbeatMs,
      heartbeatDeadlineMs: config.heartbeatDeadlineMs,
      nameProbeMs: 2_000,
      log,
      remoteAddress,
      admission,
    });
  });
  server.on("upgrade", (request, socket, head) => {
    const path = new URL(request.url ?? "/", "http://localhost").pathname;
    if (path !== WORKER_PATH) {
      socket.end("HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
      return;
    }
    wss.handleUpgrade(request, socket, head, (ws) => wss.emit("connection", ws, request));
  });
  const port = await listen(server, config.host, config.port);
  const localHost = config.host === "0.0.0.0" || config.host === "::" ? "127.0.0.1" : config.host;
  const url = `http://${localHost}:${port}`;
  const workerUrl = `ws://${localHost}:${port}`;
  nats?.start();
  const advertised = config.advertiseUrl ?? url;
  heads.start(advertised);
  // Requests from other heads: placement changes their admins sent, and models their requests wait for.
  leader?.serve(async (op) => {
    if (op.op === "demand") master.placer.wanted(op.model, op.head);
    else if (op.op === "unloadIdle") master.placer.unloadIdle(op.model);
    else if (op.op === "keepAlive") master.keptAlive(op.worker, op.model, op.keepAliveMs < 0 ? Number.POSITIVE_INFINITY : op.keepAliveMs);
    else return placementChange(master, op);
    return { status: 202, body: {} };
  });
  lease.start({ headId: self.id, name: config.headName, url: advertised });

  let demo: WorkerRuntime | undefined;
  if (config.demo) {
    const engine = new SimulatorEngine([], defaultSimulatorOptions);
    demo = new WorkerRuntime(engine, await engine.start(), {
      join: workerUrl,
      token: config.workerToken,
      name: "demo-simulator",
      maxConcurrency: 8,
      // Like any worker it comes back after a dropped connection; stop() on close ends it for good.
      reconnect: true,
      log: log.child({ component: "demo-worker" }),
    });
    await demo.start();
  }

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      closingFeeds.abort();
      pendingSockets.close();
      admission.close();
      master.close();
      for (const remove of unobserve) remove();
      leader?.close();
      await lease.close();
      await placements.close();
      await summaries?.close();
      await cacheMap?.close();
      keys.close();
      await keyMap.close();
      await heads.close();
      await sharedHealth.close();
      await nats?.close();
      await demo?.stop(CloseCode.goingAway, "coordinator shutting down");
      await Promise.all([...wss.clients].map((ws) => closeSocket(ws, CloseCode.goingAway, "coordinator shutting down")));
      await new Promise<void>((resolve) => wss.close(() => resolve()));
      await new Promise<void>((resolve) => {
        // Streams just ended by master.close() write their last event first; then their connections go idle.
        const force = setTimeout(() => server.closeAllConnections(), 1_000);
        server.close(() => {
          clearTimeout(force);
          resolve();
        });
        server.closeIdleConnections();
      });
    })();
    return closing;
  };
  const shutdown = async (graceMs: number) => {
    master.drain();
    const idle = await master.whenIdle(graceMs);
    if (!idle) log.warn({ tasks: master.liveTasks }, "grace period over; cancelling the requests still in flight");
    await close();
  };
  const fetch = async (request: Request) => app.fetch(request);
  return { url, workerUrl, port, master, fetch, close, shutdown };
}
