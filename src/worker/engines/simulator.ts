// The simulator engine: a deterministic thinking "model" for demos, tests and benchmarks. It runs no model.
import { setTimeout as sleep } from "node:timers/promises";
import { CAPABILITIES, type ChatMessage, type ModelCache, type ModelInfo, type TokenLogprob } from "../../worker-protocol/index.js";
import {
  type EmbeddingRequest,
  type EmbeddingResult,
  type EmbeddingSink,
  type Engine,
  type EngineDescription,
  EngineRequestError,
  type GenerationRequest,
  type GenerationResult,
  type GenerationSink,
} from "./engine.js";
import { jsonInstance } from "./json-instance.js";
import { SimulatedLibrary, type SimulatedModel } from "./simulated-library.js";
import { messageTokens, promptTokenList, SimulatedPromptCache, simulatorTokens } from "./simulated-cache.js";
import { SIMULATED_EMBEDDING_DIMENSIONS, simulatedEmbedding } from "./simulated-embedding.js";

export interface SimulatorOptions {
  /** Generation rate; 0 means as fast as the machine can. */
  tokensPerSecond: number;
  /** Silence before the first token (emulates prompt processing). */
  prefillMs: number;
  /** More silence before the first token per prompt token not found in the prompt cache (emulates prefill cost). */
  prefillMsPerToken?: number;
  /**
   * Tokens of recent conversations each model keeps as its prompt cache (0 or absent: none); a prompt's longest
   * common prefix with one of them is reported as cached and costs no prefill time (see simulated-cache.ts).
   */
  promptCacheTokens?: number;
  /** Silence in the middle of the reasoning section (emulates long hidden thinking). */
  thinkMs: number;
  /** Extra answer tokens appended to the natural reply (for long-stream benchmarks). */
  replyTokens: number;
  /** Fail the generation after this many tokens (emulates an engine crash); undefined: never. */
  failAfterTokens?: number;
  contextLength: number;
  /** A fixed raw reply to stream instead of the generated one (e.g. tool-call or Harmony markup, for tests). */
  script?: string;
  /** The output format announced for the models (default "think"); see docs/parsers.md. */
  format?: string;
  /**
   * The capabilities announced for the models (default: SIMULATOR_CAPABILITIES); null announces none, as a worker
   * from before capabilities existed does. See src/worker-protocol.
   */
  capabilities?: readonly string[] | null;
  /** Models it can load on command (the "models" protocol feature); absent: it serves its start models only. */
  library?: readonly SimulatedModel[];
  /** With `library`: memory its loaded models may use together (default 16 GiB). */
  memoryBytes?: number;
  /** With `library`: a directory whose .gguf files are offered too, and where pulled files go. */
  modelsDir?: string;
  /** Observation points for tests and benchmarks. */
  hooks?: SimulatorHooks;
}

export interface SimulatorHooks {
  onStart?(taskId: string): void;
  onTokens?(taskId: string, produced: number): void;
  /** Generation waits for its client (flow control), after `produced` tokens. */
  onPaused?(taskId: string, produced: number): void;
  /** Generation stopped because the signal aborted, after `produced` tokens. */
  onAbort?(taskId: string, produced: number): void;
  onEnd?(taskId: string, result: GenerationResult): void;
}

export const SIMULATOR_MODEL = "simulator";

/**
 * What the simulator honours: tools, forced tool calls (written in Hermes markup), JSON mode and structured output (a
 * small value that validates against the schema), and the sampling options, which change nothing in a reply that
 * has no randomness to begin with; logprobs with fixed values (SIMULATED_LOGPROB); embeddings of any length
 * (simulated-embedding.ts). Not logit_bias (it has no vocabulary) nor images.
 */
export const SIMULATOR_CAPABILITIES: readonly string[] = [
  CAPABILITIES.chat,
  CAPABILITIES.embeddings,
  CAPABILITIES.embeddingDimensions,
  CAPABILITIES.tools,
  CAPABILITIES.toolChoiceRequired,
  CAPABILITIES.sampling,
  CAPABILITIES.jsonObject,
  CAPABILITIES.jsonSchema,
  CAPABILITIES.logprobs,
  CAPABILITIES.rawPrompt,
];

export const defaultSimulatorOptions: SimulatorOptions = {
  tokensPerSecond: 30,
  prefillMs: 200,
  thinkMs: 0,
  replyTokens: 0,
  contextLength: 32_768,
};

const fillerWords = ["Tokens", "keep", "flowing", "through", "the", "coordinator", "from", "worker", "to", "client."];

export { simulatorTokens } from "./simulated-cache.js";

function lastUserText(messages: readonly ChatMessage[]): string {
  for (let i = messages.length - 1; i >= 0; i--) {
    const message = messages[i];
    if (message && message.role === "user") return message.content;
  }
  return "";
}

/** The reply the simulator gives to a conversation: the same messages always get the same reply. */
export function simulatedReply(messages: readonly ChatMessage[], replyTokens = 0): { reasoning: string; answer: string } {
  const words = lastUserText(messages).split(/\s+/).filter(Boolean);
  const quoted = words.slice(0, 12).join(" ").replace(/[<>]/g, "");
  const reasoning = `The user wrote ${words.length} words${quoted ? `: "${quoted}"` : ""}. I should answer briefly and say that I am a simulator.`;
  let answer = `Hello! I am the coordinator's simulated model, so this reply is canned${quoted ? `; you said "${quoted}"` : ""}.`;
  for (let i = 0; i < replyTokens; i++) answer += ` ${fillerWords[i % fillerWords.length]}`;
  return { reasoning, answer };
}

/** Memory of a simulated worker with a library, unless the options say otherwise. */
const DEFAULT_SIMULATED_MEMORY = 16 * 2 ** 30;

export class SimulatorEngine implements Engine {
  readonly kind = "simulator";
  readonly library: SimulatedLibrary | undefined;
  /** Each model's prompt cache, when the options give one. */
  private readonly caches = new Map<string, SimulatedPromptCache>();

  constructor(
    private readonly models: readonly string[],
    private readonly options: SimulatorOptions,
  ) {
    if (options.library) {
      const memory = options.memoryBytes ?? DEFAULT_SIMULATED_MEMORY;
      this.library = new SimulatedLibrary(options.library, memory, (id, length) => this.modelInfo(id, length), options.contextLength, options.modelsDir);
    }
  }

  async start(): Promise<EngineDescription> {
    // With a library, only the models named are loaded at start (possibly none); without, the default one.
    const ids = this.models.length > 0 || this.library ? this.models : [SIMULATOR_MODEL];
    this.library?.preload(ids);
    await this.library?.refresh();
    return {
      device: { kind: "simulator", name: "simulated device (no model runs)", memoryBytes: this.library?.memory().totalBytes ?? 0 },
      models: ids.map((id) => this.modelInfo(id, undefined)),
    };
  }

  private modelInfo(id: string, contextLength: number | undefined): ModelInfo {
    return {
      id,
      contextLength: contextLength ?? this.options.contextLength,
      format: this.options.format ?? "think",
      ownedBy: "coordinator-simulator",
      ...(this.options.capabilities !== null && { capabilities: [...(this.options.capabilities ?? SIMULATOR_CAPABILITIES)] }),
    };
  }

  async generate(request: GenerationRequest, sink: GenerationSink, signal: AbortSignal): Promise<GenerationResult> {
    const { hooks } = this.options;
    if (this.library && !this.library.isLoaded(request.model)) throw new Error(`model '${request.model}' is not loaded on this worker`);
    hooks?.onStart?.(request.taskId);
    // A raw prompt is continued as a user message would be answered, without the reasoning (there is no template to
    // think within).
    const raw = request.prompt !== undefined;
    const { reasoning, answer } = simulatedReply(raw ? [{ role: "user", content: request.prompt ?? "" }] : request.messages);
    const thinking = this.options.script === undefined && !raw ? simulatorTokens(`<think>${reasoning}</think>`) : [];
    const base = [...thinking, ...simulatorTokens(this.options.script ?? shapedAnswer(request, answer))];
    // Filler tokens are made on demand: a million-token reply must not be built up front (it would stall the process).
    const filler = this.options.script === undefined ? this.options.replyTokens : 0;
    const total = base.length + filler;
    const tokenAt = (i: number): string => base[i] ?? ` ${fillerWords[(i - base.length) % fillerWords.length]}`;
    const prompt = promptTokenList(request.messages, request.prompt);
    const promptTokens = prompt.length;
    const cache = this.cacheOf(request.model);
    const cachedTokens = Math.min(cache?.lookup(prompt) ?? 0, promptTokens);
    const limit = Math.min(total, request.params.maxTokens ?? Number.POSITIVE_INFINITY);
    const stops = new StopWatch(request.params.stop ?? []);
    const pauseAt = this.options.thinkMs > 0 ? Math.floor(thinking.length / 2) : -1;
    let produced = 0;
    const finish = (finishReason: GenerationResult["finishReason"], stopSequence?: string): GenerationResult => {
      const result: GenerationResult = { finishReason, usage: { promptTokens, completionTokens: produced, ...(cache && { cachedTokens }) } };
      if (stopSequence !== undefined) result.stopSequence = stopSequence;
      // What the next turn's prompt starts with: this one's, then the answer as the client sends it back.
      cache?.store([...prompt, ...messageTokens({ role: "assistant", content: answer })]);
      hooks?.onEnd?.(request.taskId, result);
      return result;
    };
    try {
      await this.prefill(promptTokens, sink, signal, promptTokens - cachedTokens);
      const started = performance.now();
      const interval = this.options.tokensPerSecond > 0 ? 1000 / this.options.tokensPerSecond : 0;
      let pausedMs = 0;
      /** Time spent held by flow control: the rate does not make up for it with a burst afterwards. */
      let heldMs = 0;
      while (produced < limit) {
        // Flow control: a client that is not reading holds the generation here.
        const room = sink.ready();
        if (room) {
          hooks?.onPaused?.(request.taskId, produced);
          const waitedFrom = performance.now();
          await room;
          signal.throwIfAborted();
          heldMs += performance.now() - waitedFrom;
        }
        if (produced === pauseAt && pausedMs === 0) {
          // A real model thinking out of the client's sight still makes tokens: the worker stays visibly alive.
          await this.silence(this.options.thinkMs, () => sink.progress(promptTokens, promptTokens), signal);
          pausedMs = this.options.thinkMs;
        }
        // Emit every token already due as one piece; then wait for the next one's time.
        const due = interval === 0 ? produced + 64 : Math.floor((performance.now() - started - pausedMs - heldMs) / interval) + 1;
        let batch = "";
        let count = 0;
        const logprobs: TokenLogprob[] | undefined = request.logprobs ? [] : undefined;
        while (produced < limit && produced < due) {
          if (this.options.failAfterTokens !== undefined && produced >= this.options.failAfterTokens) {
            if (batch) sink.text(batch, count, logprobs);
            throw new Error(`simulated engine failure after ${produced} tokens`);
          }
          const token = tokenAt(produced);
          const stopped = stops.check(batch + token);
          if (stopped !== undefined) {
            // The logprobs of whole tokens only: a token cut by the stop is not in the text.
            if (stopped.before) sink.text(stopped.before, count, stopped.before === batch ? logprobs : undefined);
            return finish("stop", stopped.stop);
          }
          batch += token;
          count += 1;
          logprobs?.push(simulatedLogprob(token, request.logprobs?.top ?? 0));
          produced += 1;
          if (produced === pauseAt && pausedMs === 0) break;
        }
        if (batch) {
          stops.emitted(batch);
          sink.text(batch, count, logprobs);
          hooks?.onTokens?.(request.taskId, produced);
        }
        if (produced >= limit) break;
        if (interval === 0) await new Promise<void>((resolve) => setImmediate(resolve));
        else {
          const nextAt = started + pausedMs + heldMs + produced * interval;
          await sleep(Math.max(0, nextAt - performance.now()), undefined, { signal });
        }
        signal.throwIfAborted();
      }
      return finish(produced < total ? "length" : "stop");
    } catch (error) {
      if (signal.aborted) hooks?.onAbort?.(request.taskId, produced);
      throw error;
    }
  }

  /**
   * simulatedEmbedding of each input, after the prefill's silence; an input of more tokens than the context is cut
   * (truncate) or refused, as a real engine does.
   */
  async embed(request: EmbeddingRequest, sink: EmbeddingSink, signal: AbortSignal): Promise<EmbeddingResult> {
    const { hooks, contextLength } = this.options;
    hooks?.onStart?.(request.taskId);
    const { inputs, dimensions = SIMULATED_EMBEDDING_DIMENSIONS, truncate } = request.embed;
    const tokenized = inputs.map((input) => (typeof input === "string" ? simulatorTokens(input) : input));
    const promptTokens = tokenized.reduce((sum, tokens) => sum + Math.min(tokens.length, contextLength), 0);
    tokenized.forEach((tokens, index) => {
      if (tokens.length > contextLength && !truncate) {
        throw new EngineRequestError(`input ${index} is ${tokens.length} tokens, but the model holds at most ${contextLength}`, "context_length_exceeded");
      }
    });
    let done = 0;
    try {
      await this.prefill(promptTokens, sink, signal);
      for (const [index, input] of inputs.entries()) {
        signal.throwIfAborted();
        const tokens = tokenized[index] ?? [];
        const cut = tokens.length > contextLength ? tokens.slice(0, contextLength) : undefined;
        const embedded = cut === undefined ? input : typeof input === "string" ? (cut as string[]).join("") : (cut as number[]);
        sink.vector(simulatedEmbedding(embedded, dimensions), Math.min(tokens.length, contextLength));
        done += 1;
        hooks?.onTokens?.(request.taskId, done);
        // A big batch takes turns with the event loop, as a real engine's would between inputs.
        if (done % 64 === 0) await new Promise<void>((resolve) => setImmediate(resolve));
      }
      const result = { promptTokens };
      hooks?.onEnd?.(request.taskId, { finishReason: "stop", usage: { promptTokens, completionTokens: 0 } });
      return result;
    } catch (error) {
      if (signal.aborted) hooks?.onAbort?.(request.taskId, done);
      throw error;
    }
  }

  cacheStats(): ModelCache[] {
    return [...this.caches].map(([model, cache]) => ({ model, ...cache.stats() }));
  }

  /** How many leading tokens of this conversation the model's prompt cache holds (for an oracle in benchmarks). */
  cachedPrefix(model: string, messages: readonly ChatMessage[]): number {
    return this.caches.get(model)?.lookup(promptTokenList(messages, undefined), false) ?? 0;
  }

  async close(): Promise<void> {}

  private cacheOf(model: string): SimulatedPromptCache | undefined {
    const capacity = this.options.promptCacheTokens ?? 0;
    if (capacity <= 0) return undefined;
    let cache = this.caches.get(model);
    if (!cache) {
      cache = new SimulatedPromptCache(capacity);
      this.caches.set(model, cache);
    }
    return cache;
  }

  /** The silence before the first token, reported as prompt progress every so often (as a real engine's prefill). */
  private prefill(promptTokens: number, sink: Pick<GenerationSink, "progress">, signal: AbortSignal, uncachedTokens = promptTokens): Promise<void> {
    const total = this.options.prefillMs + uncachedTokens * (this.options.prefillMsPerToken ?? 0);
    return this.silence(total, (elapsed) => sink.progress(Math.floor((promptTokens * elapsed) / total), promptTokens), signal);
  }

  /** Waits `ms` in steps, calling `tick` with the time elapsed after each. */
  private async silence(ms: number, tick: (elapsed: number) => void, signal: AbortSignal): Promise<void> {
    for (let elapsed = 0; elapsed < ms; ) {
      const step = Math.min(SILENCE_STEP_MS, ms - elapsed);
      await sleep(step, undefined, { signal });
      elapsed += step;
      tick(elapsed);
    }
  }
}

const SILENCE_STEP_MS = 100;

/** The simulator's logprob for every token it writes, and its alternatives' (fixed, so tests can expect them). */
export const SIMULATED_LOGPROB = -0.25;

/** A token's logprob entry: always SIMULATED_LOGPROB, with `top` alternatives "alt1", "alt2", … at -1, -2, …. */
function simulatedLogprob(token: string, top: number): TokenLogprob {
  const entry: TokenLogprob = { token, logprob: SIMULATED_LOGPROB, bytes: [...Buffer.from(token, "utf8")] };
  if (top > 0) {
    entry.top = [{ token, logprob: SIMULATED_LOGPROB }];
    for (let i = 1; i < top; i++) entry.top.push({ token: `alt${i}`, logprob: -i });
  }
  return entry;
}

/**
 * The answer as the request constrains it: a JSON value for structured output, a call of the named (or first) tool
 * when a call is forced, else the canned answer.
 */
function shapedAnswer(request: GenerationRequest, answer: string): string {
  const format = request.responseFormat;
  if (format?.type === "json_schema") return JSON.stringify(jsonInstance(format.schema));
  if (format?.type === "json_object") return JSON.stringify({ answer });
  const forced = forcedTool(request);
  if (forced !== undefined) {
    const call = { name: forced.name, arguments: jsonInstance(forced.parameters ?? { type: "object" }) };
    return `<tool_call>\n${JSON.stringify(call)}\n</tool_call>`;
  }
  return answer;
}

/** The tool a request forces the model to call (tool_choice "required": the first), if any. */
function forcedTool(request: GenerationRequest): { name: string; parameters?: unknown } | undefined {
  const choice = request.toolChoice;
  const tools = (request.tools ?? []).flatMap((tool) => {
    const fn = typeof tool === "object" && tool !== null && "function" in tool ? tool.function : undefined;
    return typeof fn === "object" && fn !== null && "name" in fn && typeof fn.name === "string"
      ? [{ name: fn.name, parameters: "parameters" in fn ? fn.parameters : undefined }]
      : [];
  });
  if (choice === "required") return tools[0];
  if (typeof choice === "object" && choice !== null && "function" in choice) {
    const fn = choice.function;
    const name = typeof fn === "object" && fn !== null && "name" in fn ? fn.name : undefined;
    return tools.find((tool) => tool.name === name);
  }
  return undefined;
}

/** Finds stop strings in generated text, keeping only the tail a stop may still begin in (O(1) per token). */
class StopWatch {
  private tail = "";
  private readonly keep: number;

  constructor(private readonly stops: readonly string[]) {
    this.keep = Math.max(0, ...stops.map((s) => s.length - 1));
  }

  /**
   * For text not yet emitted: undefined when no stop occurs, else the stop that occurs first (the one listed first
   * of those starting at the same place) and the part of the text before it.
   */
  check(pending: string): { stop: string; before: string } | undefined {
    if (this.stops.length === 0) return undefined;
    const window = this.tail + pending;
    let first: { stop: string; at: number } | undefined;
    for (const stop of this.stops) {
      const at = window.indexOf(stop);
      if (at >= 0 && (first === undefined || at < first.at)) first = { stop, at };
    }
    if (first === undefined) return undefined;
    return { stop: first.stop, before: pending.slice(0, Math.max(0, first.at - this.tail.length)) };
  }

  emitted(text: string): void {
    if (this.keep > 0) this.tail = (this.tail + text).slice(-this.keep);
  }
}
