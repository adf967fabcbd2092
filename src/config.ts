// Configuration: every flag of both commands, its environment variable and default, validated once at start-up.
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import { z } from "zod";
import { type PolicyName, POLICY_NAMES } from "./master/routing/policy.js";

export interface OptionSpec {
  name: string;
  type: "string" | "boolean";
  multiple?: boolean;
  env: string;
  default?: string;
  /** Shown in --help and in the README's table. */
  description: string;
}

/** The fewest characters of an operator-chosen secret: the worker token, a client API key. */
export const MIN_SECRET_LENGTH = 8;

export const serveOptions: readonly OptionSpec[] = [
  { name: "host", type: "string", env: "COORDINATOR_HOST", default: "0.0.0.0", description: "Address to listen on (API and workers)" },
  { name: "port", type: "string", env: "COORDINATOR_PORT", default: "52415", description: "Port to listen on (0 picks a free one)" },
  { name: "worker-token", type: "string", env: "COORDINATOR_WORKER_TOKEN", description: `Token workers must present to join, at least ${MIN_SECRET_LENGTH} characters (default: generated at start)` },
  { name: "demo", type: "boolean", env: "COORDINATOR_DEMO", description: "Also run an in-process simulator worker, so a first request works at once" },
  { name: "reasoning", type: "string", env: "COORDINATOR_REASONING", default: "hidden", description: "Thinking in replies: hidden, separate (reasoning_content) or raw" },
  { name: "reasoning-field", type: "string", env: "COORDINATOR_REASONING_FIELD", default: "reasoning_content", description: "Field for thinking in separate mode: reasoning_content (DeepSeek, vLLM), reasoning (OpenRouter, Ollama) or both" },
  { name: "routing", type: "string", env: "COORDINATOR_ROUTING", default: "least-loaded", description: "How a worker is chosen for a task: least-loaded, power-of-two, session or cache-aware (docs/routing.md)" },
  { name: "model-routing", type: "string", multiple: true, env: "COORDINATOR_MODEL_ROUTING", description: "MODEL=POLICY: the routing policy of one model, over --routing; repeatable (env: comma-separated)" },
  { name: "model-format", type: "string", multiple: true, env: "COORDINATOR_MODEL_FORMAT", description: "MODEL=FORMAT: output format (parser) of a model, over what its worker says; repeatable (env: comma-separated)" },
  { name: "keepalive-ms", type: "string", env: "COORDINATOR_KEEPALIVE_MS", default: "15000", description: "SSE keepalive comment after this much silence" },
  { name: "queue-max", type: "string", env: "COORDINATOR_QUEUE_MAX", default: "128", description: "Requests that may wait per model when all its workers are busy (then 429)" },
  { name: "queue-timeout-ms", type: "string", env: "COORDINATOR_QUEUE_TIMEOUT_MS", default: "60000", description: "Longest wait in the queue (then 503)" },
  { name: "max-attempts", type: "string", env: "COORDINATOR_MAX_ATTEMPTS", default: "3", description: "Workers tried for a request whose worker is lost before it produced anything" },
  { name: "heartbeat-ms", type: "string", env: "COORDINATOR_HEARTBEAT_MS", default: "5000", description: "Heartbeat interval announced to workers" },
  { name: "heartbeat-deadline-ms", type: "string", env: "COORDINATOR_HEARTBEAT_DEADLINE_MS", default: "15000", description: "A worker silent this long is declared dead" },
  { name: "cancel-ack-ms", type: "string", env: "COORDINATOR_CANCEL_ACK_MS", default: "10000", description: "How long a task the coordinator stopped keeps its worker's slot while waiting for the worker to confirm (TaskCancelAck)" },
  { name: "hello-timeout-ms", type: "string", env: "COORDINATOR_HELLO_TIMEOUT_MS", default: "10000", description: "A worker connection that sends no Hello this long after connecting is closed (4003)" },
  { name: "max-worker-payload", type: "string", env: "COORDINATOR_MAX_WORKER_PAYLOAD", default: "16777216", description: "Largest WebSocket message a worker may send, in bytes" },
  { name: "api-key", type: "string", multiple: true, env: "COORDINATOR_API_KEY", description: `Client API key required on /v1 and /metrics (Authorization: Bearer), at least ${MIN_SECRET_LENGTH} characters; repeatable (env: comma-separated); none: open` },
  { name: "api-keys-file", type: "string", env: "COORDINATOR_API_KEYS_FILE", description: `File with one client API key per line (# comments), each at least ${MIN_SECRET_LENGTH} characters, added to --api-key` },
  { name: "admin-key", type: "string", multiple: true, env: "COORDINATOR_ADMIN_KEY", description: `Admin key for placement, model pulls and keys added at run time (/v1/placements, /v1/models/pull, /v1/keys), at least ${MIN_SECRET_LENGTH} characters; also valid on every client route; repeatable (env: comma-separated). See docs/api.md, "Admin keys"` },
  { name: "admin-keys-file", type: "string", env: "COORDINATOR_ADMIN_KEYS_FILE", description: "File with one admin key per line (# comments), added to --admin-key" },
  { name: "no-auto-load", type: "boolean", env: "COORDINATOR_NO_AUTO_LOAD", description: "Do not load a model a worker offers when a request asks for it (by default it is loaded, as Ollama does); only placements load models" },
  { name: "model-idle-ms", type: "string", env: "COORDINATOR_MODEL_IDLE_MS", default: "300000", description: "A model loaded on demand and idle this long is unloaded (Ollama's keep_alive; a request's keep_alive overrides it)" },
  { name: "model-load-timeout-ms", type: "string", env: "COORDINATOR_MODEL_LOAD_TIMEOUT_MS", default: "600000", description: "A model load not done after this long is given up and the requests waiting for it fail (503 model_load_failed); until then they wait, whatever --queue-timeout-ms" },
  { name: "max-replicas", type: "string", env: "COORDINATOR_MAX_REPLICAS", default: "1", description: "Most instances of a model loaded on demand: when its queue stays non-empty for --replica-after-ms, another worker that offers it loads one more (1: never)" },
  { name: "replica-after-ms", type: "string", env: "COORDINATOR_REPLICA_AFTER_MS", default: "2000", description: "How long a served model's queue must stay non-empty before a replica is loaded (with --max-replicas)" },
  { name: "cors-origin", type: "string", multiple: true, env: "COORDINATOR_CORS_ORIGIN", description: "Origin allowed to call the API from a browser (CORS is off without it); repeatable, * for any" },
  { name: "headers-timeout-ms", type: "string", env: "COORDINATOR_HEADERS_TIMEOUT_MS", default: "10000", description: "A client must send a request's headers within this long (then 408 and the connection closes)" },
  { name: "request-timeout-ms", type: "string", env: "COORDINATOR_REQUEST_TIMEOUT_MS", default: "30000", description: "A client must send a whole request, body included, within this long (then 408); responses and streams are not limited" },
  { name: "max-pending-connections", type: "string", env: "COORDINATOR_MAX_PENDING_CONNECTIONS", default: "256", description: "Connections at once that have not sent a request yet; beyond it, the oldest that waited over a second are dropped" },
  { name: "max-pending-workers", type: "string", env: "COORDINATOR_MAX_PENDING_WORKERS", default: "64", description: "Worker connections at once that have not sent Hello yet; beyond it, the oldest that waited over a second are closed (1013)" },
  { name: "worker-token-failures", type: "string", env: "COORDINATOR_WORKER_TOKEN_FAILURES", default: "5", description: "Wrong worker tokens from one address within --worker-ban-ms after which it is turned away for that long (close 1013, tokens not compared); 0: never" },
  { name: "worker-ban-ms", type: "string", env: "COORDINATOR_WORKER_BAN_MS", default: "60000", description: "How long a wrong worker token counts against its address, and how long a ban lasts" },
  { name: "max-body-bytes", type: "string", env: "COORDINATOR_MAX_BODY_BYTES", default: "8388608", description: "Largest request body (then 413)" },
  { name: "max-messages", type: "string", env: "COORDINATOR_MAX_MESSAGES", default: "2048", description: "Most messages in one request (then 400)" },
  { name: "max-prompt-chars", type: "string", env: "COORDINATOR_MAX_PROMPT_CHARS", default: "4000000", description: "Most characters in all messages of one request (then 400)" },
  { name: "max-streams", type: "string", env: "COORDINATOR_MAX_STREAMS", default: "10000", description: "Most requests in flight at once, queued ones included (then 429)" },
  { name: "slow-client-ms", type: "string", env: "COORDINATOR_SLOW_CLIENT_MS", default: "30000", description: "A streaming client that reads nothing for this long while output waits is cancelled" },
  { name: "slow-client-bytes", type: "string", env: "COORDINATOR_SLOW_CLIENT_BYTES", default: "1048576", description: "Most unread output held for one stream: past half of it the worker is paused (flow control) and the stream counts as slow" },
  { name: "max-reply-bytes", type: "string", env: "COORDINATOR_MAX_REPLY_BYTES", default: "16777216", description: "Largest non-streamed reply held for a client (then 502 reply_too_large; stream instead)" },
  { name: "eject-after-failures", type: "string", env: "COORDINATOR_EJECT_AFTER_FAILURES", default: "3", description: "Consecutive failed or stalled tasks that take a worker out of rotation" },
  { name: "eject-ms", type: "string", env: "COORDINATOR_EJECT_MS", default: "30000", description: "How long a worker's first ejection lasts (doubling with each one in a row, up to ten times this); then one probe task decides" },
  { name: "task-stall-ms", type: "string", env: "COORDINATOR_TASK_STALL_MS", default: "60000", description: "A running task with no progress from its worker for this long is failed over (before output) or failed (504)" },
  { name: "feed-interval-ms", type: "string", env: "COORDINATOR_FEED_INTERVAL_MS", default: "1000", description: "How often the dashboard's live feed (/v1/cluster/events) sends a view of the cluster" },
  { name: "nats", type: "string", env: "COORDINATOR_NATS", description: "NATS server with JetStream, e.g. nats://host:4222 (several: comma-separated), through which several heads of one cluster know each other and share worker ejections and bans (docs/scaling.md); none: a head on its own" },
  { name: "head-name", type: "string", env: "COORDINATOR_HEAD_NAME", description: "This head's name among the heads, with --nats (default: host name)" },
  { name: "advertise-url", type: "string", env: "COORDINATOR_ADVERTISE_URL", description: "The URL other heads and operators reach this head's API at, with --nats (default: its own API URL)" },
  { name: "nats-lease-ms", type: "string", env: "COORDINATOR_NATS_LEASE_MS", default: "10000", description: "With --nats: how long the planner lease lasts without renewal (renewed every 3/10 of it); a dead planner's successor takes over about this long after it" },
  { name: "shutdown-grace-ms", type: "string", env: "COORDINATOR_SHUTDOWN_GRACE_MS", default: "30000", description: "On SIGTERM/SIGINT, how long in-flight requests may finish before they are cancelled" },
  { name: "log-level", type: "string", env: "COORDINATOR_LOG_LEVEL", default: "info", description: "fatal, error, warn, info, debug, trace or silent" },
  { name: "log-format", type: "string", env: "COORDINATOR_LOG_FORMAT", description: "json or pretty (default: pretty when stdout is a terminal, else json)" },
];

export const workerOptions: readonly OptionSpec[] = [
  { name: "join", type: "string", env: "COORDINATOR_JOIN", description: "Coordinator address, e.g. ws://head:52415, or several heads' addresses, comma-separated: the worker joins each, one pool of slots for all (required)" },
  { name: "token", type: "string", env: "COORDINATOR_WORKER_TOKEN", description: "The coordinator's worker token (required)" },
  { name: "engine", type: "string", env: "COORDINATOR_ENGINE", default: "sim", description: "sim (simulator), llama (llama.cpp) or openai (an OpenAI-compatible server)" },
  { name: "model", type: "string", multiple: true, env: "COORDINATOR_MODEL", description: "llama: a .gguf file; openai/sim: a model name; repeatable (env: comma-separated)" },
  { name: "name", type: "string", env: "COORDINATOR_WORKER_NAME", description: "Worker name shown in the cluster (default: host name)" },
  { name: "max-concurrency", type: "string", env: "COORDINATOR_MAX_CONCURRENCY", description: "Tasks run at once (default: sim 4, llama 1, openai 8)" },
  { name: "gpu", type: "string", env: "COORDINATOR_GPU", default: "auto", description: "llama: auto, cuda, metal, vulkan or cpu" },
  { name: "models-dir", type: "string", env: "COORDINATOR_MODELS_DIR", description: "llama: a folder whose .gguf files (not its subfolders') the worker offers to load on the master's command, besides its --model files, and where pulled models go; sim with --sim-library: its .gguf files are offered as made-up models of their sizes" },
  { name: "memory-limit", type: "string", env: "COORDINATOR_MEMORY_LIMIT", description: "llama, sim: the most memory the worker's models may need together, in bytes or with KiB, MiB, GiB or TiB (e.g. 12GiB); a load beyond it is refused (default: the device's memory; sim: 16 GiB)" },
  { name: "context-length", type: "string", env: "COORDINATOR_CONTEXT_LENGTH", description: "llama: context size per sequence (default: the model's, capped to fit); for --models-dir files, the most a model is offered with" },
  { name: "threads", type: "string", env: "COORDINATOR_THREADS", description: "llama: CPU threads per model (default: node-llama-cpp's choice; 1 for tiny models)" },
  { name: "embeddings", type: "boolean", env: "COORDINATOR_EMBEDDINGS", description: "llama: every model also computes embeddings (the embeddings capability); embedding-only models (BERT-like) always do" },
  { name: "no-prompt-cache", type: "boolean", env: "COORDINATOR_NO_PROMPT_CACHE", description: "llama: forget each task's tokens when it ends, so every prompt is evaluated whole (by default a new prompt reuses the longest prefix a free sequence holds)" },
  { name: "upstream", type: "string", env: "COORDINATOR_UPSTREAM", description: "openai: base URL, e.g. http://127.0.0.1:8080/v1" },
  { name: "upstream-key", type: "string", env: "COORDINATOR_UPSTREAM_KEY", description: "openai: API key for the upstream" },
  { name: "upstream-vision", type: "string", multiple: true, env: "COORDINATOR_UPSTREAM_VISION", description: "openai: a model that takes images (announced with the vision capability); repeatable (env: comma-separated), * for every model" },
  { name: "upstream-embeddings", type: "string", multiple: true, env: "COORDINATOR_UPSTREAM_EMBEDDINGS", description: "openai: a model the upstream computes embeddings with (announced with the embeddings capabilities, besides chat); repeatable (env: comma-separated), * for every model" },
  { name: "upstream-library", type: "boolean", env: "COORDINATOR_UPSTREAM_LIBRARY", description: "openai: offer the upstream's models as a library the coordinator loads from on demand, following its model list as it changes (rescanned every --library-scan-ms); only --model models are served from the start" },
  { name: "sim-tokens-per-second", type: "string", env: "COORDINATOR_SIM_TOKENS_PER_SECOND", default: "30", description: "sim: generation rate (0: as fast as possible)" },
  { name: "sim-prefill-ms", type: "string", env: "COORDINATOR_SIM_PREFILL_MS", default: "200", description: "sim: silence before the first token" },
  { name: "sim-prefill-ms-per-token", type: "string", env: "COORDINATOR_SIM_PREFILL_MS_PER_TOKEN", default: "0", description: "sim: more silence per prompt token not in its prompt cache" },
  { name: "sim-prompt-cache-tokens", type: "string", env: "COORDINATOR_SIM_PROMPT_CACHE_TOKENS", default: "0", description: "sim: tokens of recent conversations each model keeps as its prompt cache (0: none)" },
  { name: "sim-think-ms", type: "string", env: "COORDINATOR_SIM_THINK_MS", default: "0", description: "sim: silence in the middle of the reasoning" },
  { name: "sim-reply-tokens", type: "string", env: "COORDINATOR_SIM_REPLY_TOKENS", default: "0", description: "sim: extra answer tokens (long streams)" },
  { name: "sim-library", type: "string", multiple: true, env: "COORDINATOR_SIM_LIBRARY", description: "sim: NAME=SIZE[@LOADMS], a model the simulator can load on command (e.g. small=2GiB@500); repeatable (env: comma-separated). With it, only --model models are loaded at start, within --memory-limit" },
  { name: "library-scan-ms", type: "string", env: "COORDINATOR_LIBRARY_SCAN_MS", default: "10000", description: "How often a worker with a library (--models-dir, --sim-library, --upstream-library) looks for models added or removed" },
  { name: "sim-fail-after", type: "string", env: "COORDINATOR_SIM_FAIL_AFTER", description: "sim: fail each generation after this many tokens" },
  { name: "log-level", type: "string", env: "COORDINATOR_LOG_LEVEL", default: "info", description: "fatal, error, warn, info, debug, trace or silent" },
  { name: "log-format", type: "string", env: "COORDINATOR_LOG_FORMAT", description: "json or pretty (default: pretty when stdout is a terminal, else json)" },
];

const LogLevel = z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]);
const LogFormat = z.enum(["json", "pretty"]).optional();
const int = (min: number) => z.coerce.number().int().min(min);

const modelFormats = z.array(z.string().regex(/^[^=]+=[^=]+$/, "expected MODEL=FORMAT")).transform(
  (pairs) => new Map(pairs.map((pair) => pair.split("=", 2) as [string, string])),
);

const BYTE_SIZE = /^(\d+(?:\.\d+)?)\s*(KiB|MiB|GiB|TiB)?$/i;
const BYTE_UNITS: Record<string, number> = { kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40 };
/** A size: a whole number of bytes, or a number of KiB, MiB, GiB or TiB (`512MiB`, `1.5GiB`). */
const byteSize = z.string().transform((text, ctx) => {
  const [, number = "", unit] = BYTE_SIZE.exec(text.trim()) ?? [];
  const bytes = Math.floor(Number(number) * (unit ? (BYTE_UNITS[unit.toLowerCase()] ?? 0) : 1));
  if (number === "" || (!unit && number.includes(".")) || bytes < 1 || !Number.isSafeInteger(bytes)) {
    ctx.addIssue({ code: "custom", message: "expected a size in bytes, e.g. 8589934592, 512MiB or 8GiB" });
    return z.NEVER;
  }
  return bytes;
});

const RoutingPolicyName = z.enum(POLICY_NAMES);
const modelRoutings = z
  .array(z.string().regex(new RegExp(`^[^=]+=(${POLICY_NAMES.join("|")})$`), `expected MODEL=POLICY, POLICY one of ${POLICY_NAMES.join(", ")}`))
  .transform((pairs) => new Map(pairs.map((pair) => pair.split("=", 2) as [string, PolicyName])));

/** NATS servers: one URL or several, comma-separated, each nats:// or tls:// (what the NATS client takes as servers). */
const natsServers = z
  .string()
  .transform((value) => value.split(",").map((server) => server.trim()).filter((server) => server.length > 0))
  .refine(
    (servers) => servers.length > 0 && servers.every((server) => URL.canParse(server) && ["nats:", "tls:"].includes(new URL(server).protocol)),
    "expected a NATS URL such as nats://host:4222, or several, comma-separated",
  );

/** A client API key, from a flag, the environment or a line of the keys file. */
export const ApiKey = z.string().min(MIN_SECRET_LENGTH, `an API key must have at least ${MIN_SECRET_LENGTH} characters`);

const serveFields = z.object({
  host: z.string().min(1),
  port: int(0).max(65535),
  workerToken: z.string().min(MIN_SECRET_LENGTH, `the worker token must have at least ${MIN_SECRET_LENGTH} characters`).default(() => randomBytes(16).toString("hex")),
  demo: z.boolean().default(false),
  reasoning: z.enum(["hidden", "separate", "raw"]),
  reasoningField: z.enum(["reasoning_content", "reasoning", "both"]),
  modelFormat: modelFormats.default(() => new Map<string, string>()),
  routing: RoutingPolicyName,
  modelRouting: modelRoutings.default(() => new Map<string, PolicyName>()),
  keepaliveMs: int(10),
  queueMax: int(0),
  queueTimeoutMs: int(1),
  maxAttempts: int(1).max(100),
  heartbeatMs: int(10),
  heartbeatDeadlineMs: int(10),
  cancelAckMs: int(10),
  helloTimeoutMs: int(10),
  maxWorkerPayload: int(1024),
  apiKey: z.array(ApiKey).default([]),
  apiKeysFile: z.string().optional(),
  adminKey: z.array(ApiKey).default([]),
  adminKeysFile: z.string().optional(),
  noAutoLoad: z.boolean().default(false),
  modelIdleMs: int(0),
  maxReplicas: int(1).max(64),
  modelLoadTimeoutMs: int(10),
  replicaAfterMs: int(10),
  corsOrigin: z.array(z.string().min(1)).default([]),
  headersTimeoutMs: int(100),
  requestTimeoutMs: int(100),
  maxPendingConnections: int(1),
  maxPendingWorkers: int(1),
  workerTokenFailures: int(0),
  workerBanMs: int(10),
  maxBodyBytes: int(1024),
  maxMessages: int(1),
  maxPromptChars: int(1),
  maxStreams: int(1),
  slowClientMs: int(10),
  slowClientBytes: int(1024),
  maxReplyBytes: int(1024),
  taskStallMs: int(10),
  ejectAfterFailures: int(1).max(1000),
  ejectMs: int(10),
  feedIntervalMs: int(10),
  nats: natsServers.optional(),
  headName: z.string().min(1).max(128).default(() => hostname()),
  advertiseUrl: z.string().refine((value) => URL.canParse(value), "expected a URL such as http://head-a:52415").optional(),
  natsLeaseMs: int(1000).max(600_000),
  shutdownGraceMs: int(0),
  logLevel: LogLevel,
  logFormat: LogFormat,
});
// Node refuses a server whose headers deadline is later than its whole-request deadline.
export const ServeConfig = serveFields.refine((c) => c.headersTimeoutMs <= c.requestTimeoutMs, {
  message: "must not be shorter than --headers-timeout-ms",
  path: ["requestTimeoutMs"],
});
export type ServeConfig = z.infer<typeof ServeConfig>;

export const WorkerConfig = z
  .object({
    join: z
      .string({ message: "--join is required" })
      .refine((value) => value.split(",").every((head) => URL.canParse(head.trim())), "--join must be a URL such as ws://head:52415, or several, comma-separated"),
    token: z.string({ message: "--token is required" }).min(1),
    engine: z.enum(["sim", "llama", "openai"]),
    model: z.array(z.string().min(1)).default([]),
    name: z.string().min(1).max(128).default(() => hostname()),
    maxConcurrency: int(1).max(4096).optional(),
    gpu: z.enum(["auto", "cuda", "metal", "vulkan", "cpu"]),
    modelsDir: z.string().min(1).optional(),
    memoryLimit: byteSize.optional(),
    contextLength: int(16).optional(),
    threads: int(1).max(1024).optional(),
    embeddings: z.boolean().default(false),
    noPromptCache: z.boolean().default(false),
    upstream: z.string().url().optional(),
    upstreamKey: z.string().optional(),
    upstreamVision: z.array(z.string().min(1)).default([]),
    upstreamEmbeddings: z.array(z.string().min(1)).default([]),
    upstreamLibrary: z.boolean().default(false),
    simTokensPerSecond: z.coerce.number().min(0),
    simPrefillMs: int(0),
    simPrefillMsPerToken: z.coerce.number().min(0),
    simPromptCacheTokens: int(0),
    simThinkMs: int(0),
    simReplyTokens: int(0),
    simFailAfter: int(0).optional(),
    simLibrary: z.array(z.string().min(1)).default([]),
    libraryScanMs: int(10),
    logLevel: LogLevel,
    logFormat: LogFormat,
  })
  .transform((c) => ({ ...c, maxConcurrency: c.maxConcurrency ?? { sim: 4, llama: 1, openai: 8 }[c.engine] }));
export type WorkerConfig = z.infer<typeof WorkerConfig>;

/** Full defaults for a coordinator, for embedding and tests. */
export function serveDefaults(overrides: Partial<ServeConfig> = {}): ServeConfig {
  return { ...ServeConfig.parse(rawDefaults(serveOptions)), ...overrides };
}

export function rawDefaults(specs: readonly OptionSpec[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const spec of specs) if (spec.default !== undefined) out[camel(spec.name)] = spec.default;
  return out;
}

export function camel(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, letter: string) => letter.toUpperCase());
}
