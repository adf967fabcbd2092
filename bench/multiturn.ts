// Multi-turn conversations (issue 15): many sessions, each a chat growing by a turn at a time, against simulator
// workers with a bounded prompt cache and a prefill cost per uncached token. For each routing policy, and an oracle
// that sees every worker's cache: time to first token, cache hit rate, throughput and tasks per worker.
// Coordinator and workers run in this process (the oracle asks the workers' engines).
import { serveDefaults } from "../src/config.js";
import { startCoordinator } from "../src/coordinator.js";
import { silentLogger } from "../src/log.js";
import { type CacheAwareOptions, createPolicy, type PolicyName } from "../src/master/routing/index.js";
import type { ChatMessage } from "../src/worker-protocol/index.js";
import { defaultSimulatorOptions, SimulatorEngine, type SimulatorOptions } from "../src/worker/engines/simulator.js";
import { WorkerRuntime } from "../src/worker/runtime.js";
import { percentile, sleep, streamChat } from "./client.js";
import { seeded, wordCount } from "./made-up-text.js";
import { OraclePolicy } from "./oracle-policy.js";
import type { Row } from "./report.js";

export interface MultiturnOptions {
  sessions: number;
  turns: number;
  /** Apps: each has a long system prompt that its sessions share. */
  apps: number;
  /** Share of sessions with a system prompt of their own; the others belong to an app, drawn at random. */
  ownShare: number;
  /** Words (simulator tokens) of an app's system prompt, of a session's own one, of a user message: [min, max). */
  appSystemWords: [number, number];
  ownSystemWords: [number, number];
  userWords: [number, number];
  /** A session's pause before each turn (a user reading and typing, an agent running a tool), ms: [min, max). */
  pauseMs: [number, number];
  workers: number;
  /** Each worker's maxConcurrency. */
  slots: number;
  engine: Pick<SimulatorOptions, "prefillMs" | "prefillMsPerToken" | "tokensPerSecond" | "promptCacheTokens">;
  /** Cache-aware's options, to try thresholds other than its defaults. */
  cacheAware?: CacheAwareOptions;
}

/**
 * About 30 s per policy. Prompts grow from 0.5–2.1 k tokens at a session's first turn to 3.9–6.5 k at its twelfth
 * (mean 3.3 k); a miss costs 0.1 ms per token (a whole prompt: 50–650 ms), a reply is ~55 tokens at 400 tokens/s. A
 * worker's cache (96 k tokens) holds 29% of the conversations at their longest: its share if routing keeps them apart,
 * not all of them.
 * The pauses keep the cluster at a third to a half of its slots (a cluster sized for its load); near saturation no
 * policy keeps a conversation on its worker (docs/benchmarks.md).
 */
const full: MultiturnOptions = {
  sessions: 64,
  turns: 12,
  apps: 4,
  ownShare: 0.25,
  appSystemWords: [1_000, 2_000],
  ownSystemWords: [200, 800],
  userWords: [100, 500],
  pauseMs: [1_000, 3_000],
  workers: 4,
  slots: 4,
  engine: { prefillMs: 5, prefillMsPerToken: 0.1, tokensPerSecond: 400, promptCacheTokens: 96_000 },
};

/** A smoke pass (~8 s per policy): half the sessions, half the turns, half the pauses (about the same load). */
const quick: MultiturnOptions = { ...full, sessions: 32, turns: 6, pauseMs: [500, 1_500] };

export const MULTITURN = { full, quick };

export const MULTITURN_POLICIES = ["least-loaded", "power-of-two", "session", "cache-aware", "oracle"] as const;
type Contender = (typeof MULTITURN_POLICIES)[number];

interface SessionPlan {
  id: string;
  system: string;
  turns: Array<{ pauseMs: number; user: string }>;
}

/** The same sessions for every policy (a fixed seed). */
function planSessions(options: MultiturnOptions): SessionPlan[] {
  const random = seeded(15);
  const between = ([min, max]: [number, number]) => min + Math.floor(random() * (max - min));
  const apps = Array.from({ length: options.apps }, (_, i) => `You are app ${i}'s assistant. ${wordCount(random, between(options.appSystemWords))}`);
  return Array.from({ length: options.sessions }, (_, s) => {
    const system =
      random() < options.ownShare
        ? `You are session ${s}'s assistant. ${wordCount(random, between(options.ownSystemWords))}`
        : (apps[Math.floor(random() * apps.length)] as string);
    const turns = Array.from({ length: options.turns }, (_, t) => ({
      // The first pause staggers the sessions' starts.
      pauseMs: t === 0 ? random() * options.pauseMs[1] : between(options.pauseMs),
      user: `Session ${s}, turn ${t}: ${wordCount(random, between(options.userWords))}`,
    }));
    return { id: `session-${s}`, system, turns };
  });
}

interface TurnResult {
  ttftMs: number;
  promptTokens: number;
  cachedTokens: number;
  content: string;
}

/** What the scenario reads of a streamed chunk. */
interface Chunk {
  choices: Array<{ delta?: { content?: string | null; reasoning_content?: string } }>;
  usage?: { prompt_tokens: number; prompt_tokens_details?: { cached_tokens?: number } } | null;
}

/** One streamed turn: time to the first content or reasoning delta, the reply's content, its usage. */
async function streamTurn(url: string, sessionId: string, messages: ChatMessage[]): Promise<TurnResult> {
  const sent = performance.now();
  let ttftMs: number | undefined;
  let content = "";
  let usage: Chunk["usage"];
  const onFrame = (frame: string) => {
    if (!frame.startsWith("data: {")) return;
    const chunk = JSON.parse(frame.slice("data: ".length)) as Chunk & { error?: unknown };
    // An error event mid-stream (e.g. a queue timeout on a loaded machine): say which, rather than fail on its shape.
    if (chunk.error !== undefined) throw new Error(`session ${sessionId}: the stream ended with an error: ${frame}`);
    const delta = chunk.choices[0]?.delta;
    if (ttftMs === undefined && (delta?.content || delta?.reasoning_content)) ttftMs = performance.now() - sent;
    content += delta?.content ?? "";
    if (chunk.usage) usage = chunk.usage;
  };
  const body = { model: "simulator", messages, stream_options: { include_usage: true } };
  const { status, done, error } = await streamChat({ url, body, headers: { "X-Session-Id": sessionId }, onFrame }).result;
  if (status !== 200 || !done || ttftMs === undefined || !usage) throw new Error(`a turn of ${sessionId} failed: status ${status}${error ? `, ${error}` : ""}`);
  return { ttftMs, content, promptTokens: usage.prompt_tokens, cachedTokens: usage.prompt_tokens_details?.cached_tokens ?? 0 };
}

/** A session's turns in order: each sends the conversation so far and appends the reply's content to it. */
async function converse(url: string, session: SessionPlan): Promise<TurnResult[]> {
  const messages: ChatMessage[] = [{ role: "system", content: session.system }];
  const results: TurnResult[] = [];
  for (const turn of session.turns) {
    await sleep(turn.pauseMs);
    messages.push({ role: "user", content: turn.user });
    const result = await streamTurn(url, session.id, messages);
    messages.push({ role: "assistant", content: result.content });
    results.push(result);
  }
  return results;
}

interface PolicyRun {
  turns: TurnResult[];
  seconds: number;
  tasksPerWorker: number[];
  /** Routing decisions by reason. */
  reasons: Map<string, number>;
  /** Slots taken over slots there are, on average over the run. */
  utilization: number;
}

/** Every session against a fresh coordinator routing by `contender`, with fresh workers (cold caches). */
async function runContender(contender: Contender, sessions: SessionPlan[], options: MultiturnOptions): Promise<PolicyRun> {
  const workerToken = "multiturn-bench-token";
  const engines = new Map<string, SimulatorEngine>();
  const routing: PolicyName = contender === "oracle" ? "least-loaded" : contender;
  const head = await startCoordinator(
    serveDefaults({ host: "127.0.0.1", port: 0, workerToken, routing, reasoning: "separate" }),
    silentLogger,
    { createPolicy: contender === "oracle" ? () => new OraclePolicy(engines) : (name) => createPolicy(name, { cacheAware: options.cacheAware }) },
  );
  const assigned = new Map<string, number>();
  const reasons = new Map<string, number>();
  let busyMs = 0;
  const count = (counts: Map<string, number>, key: string) => counts.set(key, (counts.get(key) ?? 0) + 1);
  const unobserve = head.master.observers.add({
    taskAssigned: (_task, worker) => count(assigned, worker.id),
    routed: (_model, _policy, reason) => count(reasons, reason),
    taskEnded: (task) => (busyMs += task.assignedAt === undefined ? 0 : Date.now() - task.assignedAt),
  });
  const runtimes: WorkerRuntime[] = [];
  try {
    for (let i = 0; i < options.workers; i++) {
      const engine = new SimulatorEngine([], { ...defaultSimulatorOptions, ...options.engine });
      const runtime = new WorkerRuntime(engine, await engine.start(), {
        join: head.workerUrl,
        token: workerToken,
        name: `w${i}`,
        maxConcurrency: options.slots,
        reconnect: false,
        log: silentLogger,
      });
      runtimes.push(runtime);
      engines.set(await runtime.start(), engine);
    }
    const started = performance.now();
    const turns = (await Promise.all(sessions.map((session) => converse(head.url, session)))).flat();
    const seconds = (performance.now() - started) / 1000;
    const utilization = busyMs / 1000 / (seconds * options.workers * options.slots);
    return { turns, seconds, tasksPerWorker: [...engines.keys()].map((id) => assigned.get(id) ?? 0), reasons, utilization };
  } finally {
    unobserve();
    for (const runtime of runtimes) await runtime.stop();
    await head.close();
  }
}

interface Figures {
  ttft: { p50: number; p99: number; mean: number };
  hitRate: number;
  turnsPerSecond: number;
  promptTokensPerSecond: number;
  tasksPerWorker: number[];
  /** The busiest worker's tasks over the mean. */
  loadSpread: number;
  reasons: Map<string, number>;
  utilization: number;
}

function figures(run: PolicyRun): Figures {
  const ttft = run.turns.map((turn) => turn.ttftMs);
  const prompt = run.turns.reduce((sum, turn) => sum + turn.promptTokens, 0);
  const cached = run.turns.reduce((sum, turn) => sum + turn.cachedTokens, 0);
  const meanTasks = run.tasksPerWorker.reduce((sum, n) => sum + n, 0) / run.tasksPerWorker.length;
  return {
    ttft: { p50: percentile(ttft, 50), p99: percentile(ttft, 99), mean: ttft.reduce((sum, ms) => sum + ms, 0) / ttft.length },
    hitRate: cached / prompt,
    turnsPerSecond: run.turns.length / run.seconds,
    promptTokensPerSecond: prompt / run.seconds,
    tasksPerWorker: run.tasksPerWorker,
    loadSpread: Math.max(...run.tasksPerWorker) / meanTasks,
    reasons: run.reasons,
    utilization: run.utilization,
  };
}

function contenderRows(contender: Contender, f: Figures): Row[] {
  const scenario = `multiturn ${contender}`;
  return [
    { scenario, metric: "time to first token, p50", unit: "ms", coordinator: f.ttft.p50 },
    { scenario, metric: "time to first token, p99", unit: "ms", coordinator: f.ttft.p99 },
    { scenario, metric: "time to first token, mean", unit: "ms", coordinator: f.ttft.mean },
    { scenario, metric: "cache hit rate (cached / prompt tokens)", unit: "%", coordinator: f.hitRate * 100 },
    { scenario, metric: "throughput, turns", unit: "turns/s", coordinator: f.turnsPerSecond },
    { scenario, metric: "throughput, prompt tokens", unit: "tokens/s", coordinator: f.promptTokensPerSecond },
    { scenario, metric: "slots taken, mean over the run", unit: "%", coordinator: f.utilization * 100 },
    { scenario, metric: "tasks per worker, max / mean", unit: "x", coordinator: f.loadSpread, ratio: f.tasksPerWorker.join(" / ") },
    {
      scenario,
      metric: "routing decisions, by reason",
      unit: "",
      ratio: [...f.reasons].map(([reason, n]) => `${reason} ${n}`).join(", "),
    },
  ];
}

/** The issue's targets: cache-aware against least-loaded (time to first token) and the oracle (hit rate), its spread. */
function targetRows(results: Map<Contender, Figures>): Row[] {
  const aware = results.get("cache-aware");
  const least = results.get("least-loaded");
  const oracle = results.get("oracle");
  if (!aware || !least || !oracle) return [];
  const scenario = "multiturn targets";
  const speedup = least.ttft.mean / aware.ttft.mean;
  const ofOracle = aware.hitRate / oracle.hitRate;
  return [
    { scenario, metric: "cache-aware mean TTFT, times lower than least-loaded's", unit: "x", coordinator: speedup, target: "≥2x lower", met: speedup >= 2 },
    { scenario, metric: "cache-aware hit rate over the oracle's", unit: "x", coordinator: ofOracle, target: "within 20% of the oracle", met: ofOracle >= 0.8 },
    { scenario, metric: "cache-aware tasks per worker, max / mean", unit: "x", coordinator: aware.loadSpread, target: "≤1.5x", met: aware.loadSpread <= 1.5 },
  ];
}

export async function multiturnScenario(options: MultiturnOptions): Promise<Row[]> {
  const sessions = planSessions(options);
  const results = new Map<Contender, Figures>();
  const rows: Row[] = [];
  for (const contender of MULTITURN_POLICIES) {
    const at = performance.now();
    const result = figures(await runContender(contender, sessions, options));
    process.stderr.write(`bench: multiturn ${contender} took ${((performance.now() - at) / 1000).toFixed(1)} s\n`);
    results.set(contender, result);
    rows.push(...contenderRows(contender, result));
  }
  return [...rows, ...targetRows(results)];
}
