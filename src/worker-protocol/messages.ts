// Worker protocol v1: every message between master and worker, as zod schemas (the single source of truth).
import { z } from "zod";

export const PROTOCOL_VERSION = 1;

/** The path on the coordinator's port where workers open their WebSocket. */
export const WORKER_PATH = "/v1/worker";

const TaskId = z.string().min(1).max(128);

export const DeviceInfo = z.object({
  kind: z.enum(["cuda", "metal", "vulkan", "cpu", "remote", "simulator"]),
  name: z.string().max(256),
  memoryBytes: z.number().int().nonnegative(),
});
export type DeviceInfo = z.infer<typeof DeviceInfo>;

/**
 * What a model can do beyond plain chat with the basic sampling options (temperature, top_p, stop, seed, the token
 * limit), each named by a capability. A request that needs one the model's workers do not all announce is refused
 * with a 400 before queueing. Unknown names (from newer workers) are kept and ignored.
 */
export const CAPABILITIES = {
  /** Text generation: chat, and raw completions with raw_prompt. See modelCapabilities for models that name neither. */
  chat: "chat",
  /** Embedding vectors of texts or token arrays (TaskAssigned `embed`, answered by TaskEmbedding). */
  embeddings: "embeddings",
  /** `embed.dimensions`: vectors shortened to a requested size (models trained for it, e.g. Matryoshka embeddings). */
  embeddingDimensions: "embedding_dimensions",
  /** The chat template renders tool definitions and calls (tools, tool_choice auto/none). */
  tools: "tools",
  /** tool_choice "required" or a named function: the call is forced (by a grammar, or by the upstream). */
  toolChoiceRequired: "tool_choice_required",
  /** top_k, min_p, repetition_penalty, frequency_penalty, presence_penalty. */
  sampling: "sampling",
  /** logit_bias (token ids of the model's own vocabulary). */
  logitBias: "logit_bias",
  /** response_format json_object: the output is a JSON object. */
  jsonObject: "json_object",
  /** response_format json_schema: the output validates against the schema. */
  jsonSchema: "json_schema",
  /** logprobs and top_logprobs of each output token. */
  logprobs: "logprobs",
  /** Image parts in user messages. */
  vision: "vision",
  /** TaskAssigned `prompt`: a raw completion of the text as given, with no chat template (legacy completions). */
  rawPrompt: "raw_prompt",
} as const;

/** What a worker that announces no capabilities can do: what every worker did before capabilities existed. */
export const LEGACY_CAPABILITIES: readonly string[] = [CAPABILITIES.chat, CAPABILITIES.tools];

/**
 * What a model can do, from what its worker announced: LEGACY_CAPABILITIES when it announced nothing, and "chat"
 * added when it names neither "chat" nor "embeddings" (workers from before embeddings existed generate text only).
 */
export function modelCapabilities(model: ModelInfo): readonly string[] {
  const announced = model.capabilities;
  if (announced === undefined) return LEGACY_CAPABILITIES;
  if (announced.includes(CAPABILITIES.chat) || announced.includes(CAPABILITIES.embeddings)) return announced;
  return [CAPABILITIES.chat, ...announced];
}

export const ModelInfo = z.object({
  id: z.string().min(1).max(256),
  contextLength: z.number().int().positive(),
  /** Output format family of the model (reasoning / tool-call markup), e.g. "think", "harmony"; see docs/parsers.md. */
  format: z.string().max(64).optional(),
  ownedBy: z.string().max(256).optional(),
  /** See CAPABILITIES; absent: LEGACY_CAPABILITIES. */
  capabilities: z.array(z.string().max(64)).max(64).optional(),
});
export type ModelInfo = z.infer<typeof ModelInfo>;

/**
 * Features a side may announce (Hello `features` from the worker, Welcome `features` from the master): each is used
 * only when both sides announce it, so older workers and masters keep working. See docs/worker-protocol.md.
 */
export const FEATURES = {
  /**
   * Models loaded and unloaded on the master's command: the worker offers a library (Hello `library`, Library), the
   * master sends LoadModel and UnloadModel, the worker answers with ModelStatus.
   */
  models: "models",
  /** Downloads into the worker's models dir on the master's command (PullModel, answered with PullStatus). */
  pull: "pull",
  /**
   * The worker is the judge of its own slots: it answers a TaskAssigned it has no slot for with TaskRefused, at once,
   * instead of running more tasks than its maxConcurrency (the master then tries another worker or queues the task).
   */
  refuse: "refuse",
  /**
   * The master tells the worker every head of its cluster (Welcome `heads`, then Heads when they change), and the
   * worker joins each (docs/scaling.md). Taken up only by a master that knows other heads.
   */
  heads: "heads",
  /**
   * Model commands fenced by the planner's epoch (docs/scaling.md, Fencing): the master sends Leader and stamps
   * LoadModel and UnloadModel with its epoch; the worker obeys no command older than the highest epoch it has seen on
   * any head. Offered by a worker that loads models on command.
   */
  epoch: "epoch",
} as const;

/** A planner's fencing epoch: it only grows from one leader to the next. */
const Epoch = z.number().int().positive();

/** A model a worker can load on command (a GGUF file in its models dir, a model of its upstream, a simulated one). */
export const LibraryModel = z.object({
  id: z.string().min(1).max(256),
  /** Bytes on disk (0 when unknown: an upstream's model). */
  sizeBytes: z.number().int().nonnegative(),
  /** Memory it needs once loaded, at `contextLength` and one sequence, as the worker estimates it. */
  memoryBytes: z.number().int().nonnegative(),
  /** The context length it would be loaded with by default (the most it was trained on, or the worker's cap). */
  contextLength: z.number().int().positive(),
  format: z.string().max(64).optional(),
  capabilities: z.array(z.string().max(64)).max(64).optional(),
});
export type LibraryModel = z.infer<typeof LibraryModel>;

/** The most models a worker's library may offer (Hello `library`, Library). */
export const MAX_LIBRARY_MODELS = 4096;

/** A worker's memory for models: the device's total, and what is free for another model (within --memory-limit). */
export const WorkerMemory = z.object({
  totalBytes: z.number().int().nonnegative(),
  freeBytes: z.number().int().nonnegative(),
});
export type WorkerMemory = z.infer<typeof WorkerMemory>;

/** A piece of a multimodal message: text, or an image by URL (an http(s) URL or a data URL). */
export const MessagePart = z.discriminatedUnion("type", [
  z.object({ type: z.literal("text"), text: z.string() }),
  z.object({ type: z.literal("image_url"), url: z.string().min(1) }),
]);
export type MessagePart = z.infer<typeof MessagePart>;

/** Longest embedding vector a worker may return, in values. */
export const MAX_EMBEDDING_DIMENSIONS = 65_536;
/** Most inputs one embedding task may hold (OpenAI's limit per request). */
export const MAX_EMBEDDING_INPUTS = 2048;

/** An embedding task: the inputs to embed, each a text or the model's own token ids. */
export const EmbedSpec = z.object({
  inputs: z
    .array(z.union([z.string(), z.array(z.number().int().nonnegative()).min(1)]))
    .min(1)
    .max(MAX_EMBEDDING_INPUTS),
  /** The "embedding_dimensions" capability: the length every vector must have. */
  dimensions: z.number().int().positive().max(MAX_EMBEDDING_DIMENSIONS).optional(),
  /**
   * An input longer than the model's context: true cuts it to fit (its end is dropped, as Ollama does); absent or
   * false fails the task with the code context_length_exceeded (as OpenAI does).
   */
  truncate: z.boolean().optional(),
});
export type EmbedSpec = z.infer<typeof EmbedSpec>;

export const ChatMessage = z.object({
  role: z.enum(["system", "developer", "user", "assistant", "tool"]),
  /** The message's text (its text parts joined with newlines when it has images too). */
  content: z.string(),
  /** The message in order, text and images, when it holds images (only sent to models with the vision capability). */
  parts: z.array(MessagePart).max(256).optional(),
  name: z.string().optional(),
  /** Assistant turns that called tools (OpenAI shape), passed through to the chat template. */
  toolCalls: z.array(z.unknown()).optional(),
  /** Tool-role turns: which call this is the result of. */
  toolCallId: z.string().optional(),
});
export type ChatMessage = z.infer<typeof ChatMessage>;

export const SamplingParams = z.object({
  maxTokens: z.number().int().positive().optional(),
  temperature: z.number().min(0).max(2).optional(),
  topP: z.number().min(0).max(1).optional(),
  stop: z.array(z.string()).max(16).optional(),
  seed: z.number().int().optional(),
  /** The "sampling" capability. topK 0: no top-k cut at all (not the engine's default). */
  topK: z.number().int().nonnegative().optional(),
  minP: z.number().min(0).max(1).optional(),
  /** Multiplicative penalty on repeated tokens (llama.cpp's repeat_penalty, vLLM's repetition_penalty); 1 is none. */
  repetitionPenalty: z.number().positive().max(10).optional(),
  frequencyPenalty: z.number().min(-2).max(2).optional(),
  presencePenalty: z.number().min(-2).max(2).optional(),
  /** The "logit_bias" capability: token id (as a decimal string) → bias added to its logit, -100 bans, 100 forces. */
  logitBias: z.record(z.string().regex(/^\d{1,9}$/), z.number().min(-100).max(100)).optional(),
});
export type SamplingParams = z.infer<typeof SamplingParams>;

/** Structured output: a JSON object, or JSON that validates against `schema` (capabilities json_object / json_schema). */
export const ResponseFormat = z.discriminatedUnion("type", [
  z.object({ type: z.literal("json_object") }),
  z.object({
    type: z.literal("json_schema"),
    name: z.string().max(64).optional(),
    schema: z.record(z.string(), z.unknown()),
    strict: z.boolean().optional(),
  }),
]);
export type ResponseFormat = z.infer<typeof ResponseFormat>;

/** One output token's log probability (OpenAI's shape, camel-cased), with the most likely alternatives. */
export const TokenLogprob = z.object({
  token: z.string(),
  logprob: z.number(),
  bytes: z.array(z.number().int().min(0).max(255)).optional(),
  top: z
    .array(z.object({ token: z.string(), logprob: z.number(), bytes: z.array(z.number().int().min(0).max(255)).optional() }))
    .max(20)
    .optional(),
});
export type TokenLogprob = z.infer<typeof TokenLogprob>;

export const Usage = z.object({
  promptTokens: z.number().int().nonnegative(),
  completionTokens: z.number().int().nonnegative(),
  /**
   * Of promptTokens, how many the engine found in its cache and did not evaluate again (prefix reuse); absent: none
   * or unknown. The master passes on at most promptTokens.
   */
  cachedTokens: z.number().int().nonnegative().optional(),
});
export type Usage = z.infer<typeof Usage>;

export const FinishReason = z.enum(["stop", "length", "tool_calls"]);
export type FinishReason = z.infer<typeof FinishReason>;

// ---------- worker → master ----------

export const Hello = z.object({
  type: z.literal("Hello"),
  protocolVersion: z.number().int(),
  token: z.string().max(1024),
  worker: z.object({
    name: z.string().min(1).max(128),
    device: DeviceInfo,
    maxConcurrency: z.number().int().positive().max(4096),
    engine: z.string().max(64),
  }),
  /** Models loaded now. May be empty only for a worker with the "models" feature (and a library, even empty). */
  models: z.array(ModelInfo).max(256),
  /** See FEATURES; unknown names are ignored. */
  features: z.array(z.string().max(64)).max(64).optional(),
  /** The "models" feature: what the worker could load on command (loaded models included). */
  library: z.array(LibraryModel).max(MAX_LIBRARY_MODELS).optional(),
  /** The "models" feature: its memory. */
  memory: WorkerMemory.optional(),
});
export type Hello = z.infer<typeof Hello>;

export const TokenChunk = z.object({
  type: z.literal("TokenChunk"),
  taskId: TaskId,
  /** 0, 1, 2, … per task; the master drops a chunk whose seq is not the next one. */
  seq: z.number().int().nonnegative(),
  text: z.string(),
  /** How many model tokens this text holds, when the engine knows. */
  tokens: z.number().int().nonnegative().optional(),
  /** Each token of `text`, in order, when the task asked for logprobs. */
  logprobs: z.array(TokenLogprob).optional(),
});
export type TokenChunk = z.infer<typeof TokenChunk>;

export const TaskFinished = z.object({
  type: z.literal("TaskFinished"),
  taskId: TaskId,
  finishReason: FinishReason,
  usage: Usage,
  /**
   * With finishReason "stop": which of the task's `params.stop` strings ended the reply (never a chat template's own
   * stop trigger). The master passes it on only when it is one of the task's stops, so its length is bounded by them.
   */
  stopSequence: z.string().optional(),
});
export type TaskFinished = z.infer<typeof TaskFinished>;

/**
 * One input's embedding (worker → master), sent in input order: `index` 0, 1, 2, … of the task's `embed.inputs`,
 * before the TaskFinished whose usage counts their prompt tokens. Not subject to the flow-control window: a task's
 * vectors are bounded by its inputs. Every vector of a task has the same length, `embed.dimensions` when set.
 */
export const TaskEmbedding = z.object({
  type: z.literal("TaskEmbedding"),
  taskId: TaskId,
  index: z.number().int().nonnegative(),
  /** The vector, L2-normalised, as base64 of its float32 values, little-endian (see embedding.ts). */
  embedding: z.string().min(1).max(Math.ceil((MAX_EMBEDDING_DIMENSIONS * 4) / 3) + 4),
  /** The input's length in model tokens (after truncation). */
  tokens: z.number().int().nonnegative(),
});
export type TaskEmbedding = z.infer<typeof TaskEmbedding>;

export const TaskFailed = z.object({
  type: z.literal("TaskFailed"),
  taskId: TaskId,
  error: z.object({
    message: z.string().max(4096),
    code: z.string().max(64).optional(),
  }),
});
export type TaskFailed = z.infer<typeof TaskFailed>;

/**
 * Prompt processing progress of a running task (worker → master). Any message about a task counts as progress
 * for the master's stall detection; this one lets a long prefill show it is alive before the first token. A
 * worker sends one when it starts a task (`promptTokensDone: 0`), then as the engine evaluates the prompt.
 */
export const TaskProgress = z.object({
  type: z.literal("TaskProgress"),
  taskId: TaskId,
  /** Prompt tokens evaluated so far. */
  promptTokensDone: z.number().int().nonnegative(),
  /** The prompt's length in tokens, when the engine knows it. */
  promptTokens: z.number().int().nonnegative().optional(),
});
export type TaskProgress = z.infer<typeof TaskProgress>;

export const TaskCancelAck = z.object({
  type: z.literal("TaskCancelAck"),
  taskId: TaskId,
  /** Tokens the engine had produced for this task when it stopped. */
  completionTokens: z.number().int().nonnegative().optional(),
});
export type TaskCancelAck = z.infer<typeof TaskCancelAck>;

/**
 * A TaskAssigned the worker did not start, sent at once and instead of any other message about the task: `no_slot`,
 * every slot is taken (a task the master gave up on may still be stopping); `draining`, it takes no new tasks.
 */
export const TaskRefused = z.object({
  type: z.literal("TaskRefused"),
  taskId: TaskId,
  reason: z.enum(["no_slot", "draining"]),
});
export type TaskRefused = z.infer<typeof TaskRefused>;

/** What an engine keeps cached for one model: its context sequences holding a prompt, and their tokens. */
export const ModelCache = z.object({
  model: z.string().min(1).max(256),
  sequences: z.number().int().nonnegative(),
  tokens: z.number().int().nonnegative(),
});
export type ModelCache = z.infer<typeof ModelCache>;

/**
 * How a model served by a library worker is used, over all its heads: the planner judges idleness by it, so that it
 * never unloads a model another head's task is using.
 */
export const ModelUsage = z.object({
  id: z.string().min(1).max(256),
  /** Tasks of the model running on the worker now, whichever head assigned them. */
  running: z.number().int().nonnegative(),
  /** Since the last task of it ended (0 while one runs; since its load if none ran). */
  idleMs: z.number().int().nonnegative(),
});
export type ModelUsage = z.infer<typeof ModelUsage>;

export const Heartbeat = z.object({
  type: z.literal("Heartbeat"),
  /** Sender's clock, ms since the epoch (informational). */
  at: z.number(),
  /** Worker → master: how many generations its engine is running right now (the master checks for orphans). */
  running: z.number().int().nonnegative().optional(),
  /** Worker → master: what its engine holds in its prompt caches, per model (for /v1/cluster and the dashboard). */
  cache: z.array(ModelCache).max(256).optional(),
  /** Worker → master, from a worker with the "epoch" feature: how each model it serves is used. */
  models: z.array(ModelUsage).max(256).optional(),
});
export type Heartbeat = z.infer<typeof Heartbeat>;

/** The "models" feature: the worker's library or memory changed (a file added or removed, another process's use). */
export const Library = z.object({
  type: z.literal("Library"),
  library: z.array(LibraryModel).max(MAX_LIBRARY_MODELS),
  memory: WorkerMemory,
});
export type Library = z.infer<typeof Library>;

/** ModelStatus error codes of a model command the worker did not obey (it answers with the model's actual state). */
export const NOT_OBEYED = {
  /** The command's epoch is below the highest the worker has seen: a newer planner leads. */
  staleEpoch: "stale_epoch",
  /** An UnloadModel with `ifIdle` while a task of the model runs on the worker. */
  inUse: "in_use",
  /**
   * A command without an epoch while the worker is joined to several heads: heads that share no planner lease (no
   * --nats) would each plan loads on it, so it obeys none of them.
   */
  unfenced: "unfenced",
} as const;

export const ModelState = z.enum(["loading", "loaded", "unloading", "unloaded", "failed"]);
export type ModelState = z.infer<typeof ModelState>;

/**
 * The "models" feature: where a model the master told the worker to load or unload stands. "loading" may repeat
 * with a rising `progress`; "loaded" carries the model's `info` (it is served from then on); "unloading" says it
 * takes no more tasks; "unloaded" that its memory is free; "failed" that a load failed (`error`, e.g. code
 * out_of_memory), after which it is not loaded. A command the worker did not obey is answered with the model's actual
 * state on it and an error whose code says why (NOT_OBEYED): the sender's view of the model is corrected by it.
 */
export const ModelStatus = z.object({
  type: z.literal("ModelStatus"),
  model: z.string().min(1).max(256),
  state: ModelState,
  /** "loading": how far, 0 to 1. */
  progress: z.number().min(0).max(1).optional(),
  /** "loaded": the model as it is served. */
  info: ModelInfo.optional(),
  error: z.object({ message: z.string().max(4096), code: z.string().max(64).optional() }).optional(),
  /** The worker's memory after the change. */
  memory: WorkerMemory.optional(),
});
export type ModelStatus = z.infer<typeof ModelStatus>;

/**
 * The "pull" feature: where a download the master asked for (PullModel) stands. "downloading" repeats with the bytes
 * received (at most every 250 ms); "done" names the file (the worker's Library follows with the new model);
 * "failed" carries the reason (codes in docs/model-pull.md).
 */
export const PullStatus = z.object({
  type: z.literal("PullStatus"),
  pullId: z.string().min(1).max(128),
  state: z.enum(["downloading", "done", "failed"]),
  receivedBytes: z.number().int().nonnegative(),
  totalBytes: z.number().int().nonnegative().optional(),
  fileName: z.string().max(256).optional(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/).optional(),
  error: z.object({ message: z.string().max(4096), code: z.string().max(64).optional() }).optional(),
  /** The pull's URL, as PullModel gave it: a head that did not start the pull lists it from this (several heads). */
  url: z.string().max(4096).optional(),
});
export type PullStatus = z.infer<typeof PullStatus>;

export const Draining = z.object({
  type: z.literal("Draining"),
});
export type Draining = z.infer<typeof Draining>;

export const WorkerMessage = z.discriminatedUnion("type", [
  Hello,
  TokenChunk,
  TaskFinished,
  TaskEmbedding,
  TaskFailed,
  TaskCancelAck,
  TaskRefused,
  TaskProgress,
  Heartbeat,
  Draining,
  Library,
  ModelStatus,
  PullStatus,
]);
export type WorkerMessage = z.infer<typeof WorkerMessage>;

// ---------- master → worker ----------

export const Welcome = z.object({
  type: z.literal("Welcome"),
  protocolVersion: z.number().int(),
  workerId: z.string(),
  heartbeatIntervalMs: z.number().int().positive(),
  /**
   * Flow control: bytes of TokenChunk text (UTF-8, an empty text counting as 1) each task may have outstanding,
   * i.e. sent but not yet granted back by TaskCredit. A worker sends a chunk only while its task's outstanding
   * bytes are below the window (one chunk may overshoot it), and otherwise waits for TaskCredit. Absent: no window.
   */
  taskWindowBytes: z.number().int().positive().optional(),
  /** See FEATURES: those the master takes up of the ones the worker announced. */
  features: z.array(z.string().max(64)).max(64).optional(),
  /** With the "heads" feature: every head's worker address (ws://host:port/worker), this one's included. */
  heads: z.array(z.string().url().max(2048)).max(64).optional(),
});
export type Welcome = z.infer<typeof Welcome>;

/** With the "heads" feature: the heads of the cluster changed; every head's worker address, this one's included. */
export const Heads = z.object({
  type: z.literal("Heads"),
  heads: z.array(z.string().url().max(2048)).max(64),
});
export type Heads = z.infer<typeof Heads>;

export const TaskAssigned = z.object({
  type: z.literal("TaskAssigned"),
  taskId: TaskId,
  model: z.string(),
  messages: z.array(ChatMessage),
  params: SamplingParams,
  /** Tool definitions (OpenAI shape) for the engine's chat template. */
  tools: z.array(z.unknown()).optional(),
  toolChoice: z.unknown().optional(),
  parallelToolCalls: z.boolean().optional(),
  reasoningEffort: z.string().optional(),
  chatTemplateKwargs: z.record(z.string(), z.unknown()).optional(),
  /**
   * A raw prompt to continue as is, with no chat template (the "raw_prompt" capability); `messages` is then empty.
   */
  prompt: z.string().optional(),
  /**
   * An embedding task (the "embeddings" capability) instead of a generation: `messages` is empty, `params` unused.
   * The worker answers with one TaskEmbedding per input, then TaskFinished (usage.promptTokens: all inputs' tokens).
   */
  embed: EmbedSpec.optional(),
  /** Structured output the engine must enforce. */
  responseFormat: ResponseFormat.optional(),
  /** Report each output token's logprob (TokenChunk.logprobs), with this many alternatives (0–20). */
  logprobs: z.object({ top: z.number().int().min(0).max(20) }).optional(),
  /**
   * Fields of the client's request that no API here defines, for an upstream server that may know them (the upstream
   * engine merges them into its request body; other engines ignore them). See docs/api.md.
   */
  extraBody: z.record(z.string(), z.unknown()).optional(),
});
export type TaskAssigned = z.infer<typeof TaskAssigned>;

export const TaskCancelled = z.object({
  type: z.literal("TaskCancelled"),
  taskId: TaskId,
  reason: z.string(),
});
export type TaskCancelled = z.infer<typeof TaskCancelled>;

/** Flow control: the master consumed `bytes` of the task's output; the worker may send that many more. */
export const TaskCredit = z.object({
  type: z.literal("TaskCredit"),
  taskId: TaskId,
  bytes: z.number().int().positive(),
});
export type TaskCredit = z.infer<typeof TaskCredit>;

/**
 * The "models" feature: load a model of the worker's library. `concurrency`: tasks it should be able to run at once
 * (context sequences); both absent: the worker's defaults. Answered with ModelStatus.
 */
export const LoadModel = z.object({
  type: z.literal("LoadModel"),
  model: z.string().min(1).max(256),
  contextLength: z.number().int().positive().optional(),
  concurrency: z.number().int().positive().max(4096).optional(),
  /** The "epoch" feature: the sender's planner epoch; a worker that has seen a higher one does not obey. */
  epoch: Epoch.optional(),
});
export type LoadModel = z.infer<typeof LoadModel>;

/**
 * The "models" feature: unload a model (or give up loading it). The master sends it only once no task of the model
 * runs on the worker. Answered with ModelStatus "unloading", then "unloaded".
 */
export const UnloadModel = z.object({
  type: z.literal("UnloadModel"),
  model: z.string().min(1).max(256),
  reason: z.string().max(256).optional(),
  /** The "epoch" feature: as LoadModel's. */
  epoch: Epoch.optional(),
  /**
   * Only if no task of the model runs on the worker, whichever head assigned it (idle unloads, evictions): else it
   * stays loaded, and the worker answers ModelStatus "loaded" with error code "in_use".
   */
  ifIdle: z.boolean().optional(),
});
export type UnloadModel = z.infer<typeof UnloadModel>;

/** The "pull" feature: download a model file into the worker's models dir (see docs/model-pull.md). */
export const PullModel = z.object({
  type: z.literal("PullModel"),
  pullId: z.string().min(1).max(128),
  url: z.string().min(1).max(4096),
  fileName: z.string().max(256).optional(),
  sha256: z.string().regex(/^[0-9a-fA-F]{64}$/).optional(),
  /** Sent with the download's requests (e.g. a Hugging Face token for a gated repo). */
  headers: z.record(z.string().max(256), z.string().max(8192)).optional(),
});
export type PullModel = z.infer<typeof PullModel>;

/**
 * The "epoch" feature: the sender plans model loads for the cluster from now on, at `epoch` (sent after Welcome and
 * when it becomes the planner). A worker ignores one older than the highest epoch it has seen.
 */
export const Leader = z.object({
  type: z.literal("Leader"),
  epoch: Epoch,
});
export type Leader = z.infer<typeof Leader>;

export const ProtocolErrorMessage = z.object({
  type: z.literal("ProtocolError"),
  code: z.string(),
  message: z.string(),
});
export type ProtocolErrorMessage = z.infer<typeof ProtocolErrorMessage>;

export const MasterMessage = z.discriminatedUnion("type", [
  Welcome,
  TaskAssigned,
  TaskCancelled,
  TaskCredit,
  Heartbeat,
  LoadModel,
  UnloadModel,
  PullModel,
  Heads,
  Leader,
  ProtocolErrorMessage,
]);
export type MasterMessage = z.infer<typeof MasterMessage>;
