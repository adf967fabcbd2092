// The llama.cpp engine: runs GGUF models in this process through node-llama-cpp, an optional peer dependency loaded only here.
//
// Offline guarantee: `getLlama` is called with `build: "never"` and `skipDownload: true`, so it only ever loads a
// prebuilt binary shipped inside the npm package (or a local build made earlier); it never downloads or compiles.
// At install time, set NODE_LLAMA_CPP_SKIP_DOWNLOAD=true (and NODE_LLAMA_CPP_POSTINSTALL=skip) so that the
// package's postinstall script cannot try either (npm 11 does not run it anyway unless approved).
import os from "node:os";
import { basename, extname } from "node:path";
import { z } from "zod";
import type {
  ChatHistoryItem,
  ChatModelFunctionCall,
  ChatModelFunctions,
  ChatWrapper,
  Llama,
  LlamaContext,
  LlamaContextSequence,
  LlamaModel,
  LlamaText,
  Token,
} from "node-llama-cpp";
import type { ChatMessage, DeviceInfo, FinishReason, ModelInfo } from "../../worker-protocol/index.js";
import type { Engine, EngineDescription, GenerationRequest, GenerationResult, GenerationSink } from "./engine.js";
import type { GpuChoice } from "./index.js";

type NodeLlamaCpp = typeof import("node-llama-cpp");

export interface LlamaEngineOptions {
  /** GGUF files; each is served under its file name without `.gguf`. */
  modelPaths: string[];
  gpu: GpuChoice;
  /** Tasks served at once per model, each on its own context sequence. */
  maxConcurrency: number;
  /** Tokens per sequence (prompt and reply); defaults to what the model was trained on, as memory allows. */
  contextLength?: number;
  /** CPU threads per context; defaults to node-llama-cpp's choice, or 1 for tiny models (< 32 MB) where more only adds overhead. */
  threads?: number;
  /** Receives llama.cpp's log lines (warnings and errors); without it node-llama-cpp prints them itself. */
  onLog?: (level: string, message: string) => void;
}

interface LoadedModel {
  info: ModelInfo;
  model: LlamaModel;
  context: LlamaContext;
  chatWrapper: ChatWrapper;
  sequences: SequencePool;
}

const TINY_MODEL_BYTES = 32 * 1024 * 1024;
/** Prompt tokens given to the detokenizer as context, so the first reply token is spaced as the model meant. */
const DETOKENIZE_CONTEXT_TOKENS = 16;

export class LlamaEngine implements Engine {
  readonly kind = "llama";
  private llama: Llama | undefined;
  private lib: NodeLlamaCpp | undefined;
  private readonly models = new Map<string, LoadedModel>();

  constructor(private readonly options: LlamaEngineOptions) {
    if (options.modelPaths.length === 0) throw new Error("the llama engine needs at least one --model PATH.gguf");
    if (!Number.isInteger(options.maxConcurrency) || options.maxConcurrency < 1) {
      throw new Error("maxConcurrency must be a positive integer");
    }
  }

  async start(): Promise<EngineDescription> {
    if (this.llama) throw new Error("the llama engine is already started");
    const lib = await loadNodeLlamaCpp();
    this.lib = lib;
    this.llama = await openLlama(lib, this.options);
    for (const path of this.options.modelPaths) {
      const loaded = await this.loadModel(lib, this.llama, path);
      if (this.models.has(loaded.info.id)) throw new Error(`two model files are both named '${loaded.info.id}'`);
      this.models.set(loaded.info.id, loaded);
    }
    return { device: await describeDevice(this.llama), models: [...this.models.values()].map((m) => m.info) };
  }

  async generate(request: GenerationRequest, sink: GenerationSink, signal: AbortSignal): Promise<GenerationResult> {
    const loaded = this.models.get(request.model);
    if (!loaded || !this.lib) throw new Error(`this worker does not serve the model '${request.model}'`);
    const prompt = renderPrompt(this.lib, loaded, request);
    const sequence = await loaded.sequences.acquire(signal);
    try {
      return await decode(loaded, sequence, prompt, request, sink, signal);
    } finally {
      await loaded.sequences.release(sequence);
    }
  }

  async close(): Promise<void> {
    const llama = this.llama;
    this.llama = undefined;
    this.models.clear();
    await llama?.dispose(); // disposes every model, context and sequence it made
  }

  private async loadModel(lib: NodeLlamaCpp, llama: Llama, path: string): Promise<LoadedModel> {
    const model = await llama.loadModel({ modelPath: path });
    const threads = this.options.threads ?? (model.size < TINY_MODEL_BYTES ? 1 : undefined);
    const context = await model.createContext({
      sequences: this.options.maxConcurrency,
      contextSize: this.options.contextLength ?? { max: model.trainContextSize },
      ...(threads === undefined ? {} : { threads }),
    });
    const info: ModelInfo = {
      id: basename(path, extname(path)),
      contextLength: context.contextSize,
      format: detectFormat(model),
    };
    const chatWrapper = lib.resolveChatWrapper(model);
    return { info, model, context, chatWrapper, sequences: new SequencePool(context, this.options.maxConcurrency) };
  }
}

async function loadNodeLlamaCpp(): Promise<NodeLlamaCpp> {
  try {
    return await import("node-llama-cpp");
  } catch (error) {
    if (isMissingPackage(error, "node-llama-cpp")) {
      throw new Error(
        "The llama engine needs the node-llama-cpp package, which is not installed. " +
          "Install it next to the coordinator with: npm install node-llama-cpp",
        { cause: error },
      );
    }
    throw error;
  }
}

function isMissingPackage(error: unknown, name: string): boolean {
  if (!(error instanceof Error) || !("code" in error)) return false;
  return error.code === "ERR_MODULE_NOT_FOUND" && error.message.includes(`'${name}'`);
}

async function openLlama(lib: NodeLlamaCpp, options: LlamaEngineOptions): Promise<Llama> {
  const gpu = options.gpu === "cpu" ? false : options.gpu;
  try {
    return await lib.getLlama({
      gpu,
      build: "never", // never compile llama.cpp: use the prebuilt binaries that come with the package
      skipDownload: true, // never fetch llama.cpp sources
      ...(options.onLog ? { logger: options.onLog } : {}),
    });
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new Error(`could not load llama.cpp for --gpu ${options.gpu}: ${reason}`, { cause: error });
  }
}

async function describeDevice(llama: Llama): Promise<DeviceInfo> {
  if (llama.gpu === false) {
    return { kind: "cpu", name: os.cpus()[0]?.model.trim() || os.arch(), memoryBytes: os.totalmem() };
  }
  const [names, vram] = await Promise.all([llama.getGpuDeviceNames(), llama.getVramState()]);
  return { kind: llama.gpu, name: names.join(", ") || llama.gpu, memoryBytes: vram.total };
}

/** The reasoning/tool-call markup family, as the master's parser registry names it, from the chat template. */
function detectFormat(model: LlamaModel): string | undefined {
  const template = model.fileInfo.metadata.tokenizer?.chat_template ?? "";
  const architecture = String(model.fileInfo.metadata.general.architecture);
  if (architecture === "gpt-oss" || template.includes("<|channel|>")) return "harmony";
  if (template.includes("[THINK]") || template.includes("[TOOL_CALLS]")) return "mistral";
  if (template.includes("<seed:think>")) return "seed";
  // The engine streams a `<think>` the template prefills itself (see renderPrompt), so never "think-prefilled".
  if (template.includes("<think>") || template.includes("</think>") || template.includes("<tool_call>")) return "think";
  if (template.includes("<|python_tag|>")) return "llama3";
  return undefined; // the master auto-detects
}

interface RenderedPrompt {
  tokens: Token[];
  /** Text the chat template already opened the reply with (e.g. `<think>\n`), to stream ahead of the model's own. */
  openedWith: string;
  /** Plain-text stop triggers of the chat wrapper (end-of-generation tokens stop decoding by themselves). */
  stops: string[];
}

function renderPrompt(lib: NodeLlamaCpp, loaded: LoadedModel, request: GenerationRequest): RenderedPrompt {
  const chatHistory: ChatHistoryItem[] = [...toChatHistory(request.messages), { type: "model", response: [] }];
  const availableFunctions = toFunctions(request.tools ?? []);
  const state = loaded.chatWrapper.generateContextState({ chatHistory, availableFunctions, documentFunctionParams: true });
  const tokens = state.contextText.tokenize(loaded.model.tokenizer);
  const tail = loaded.model.detokenize(tokens.slice(-DETOKENIZE_CONTEXT_TOKENS), true);
  const openedWith = /(?:<think>|<seed:think>|\[THINK\])\s*$/.exec(tail)?.[0] ?? "";
  const stops = state.stopGenerationTriggers.flatMap((trigger) => plainText(lib, trigger));
  return { tokens, openedWith, stops };
}

/** OpenAI-shaped messages as node-llama-cpp's chat history; a tool result is rendered with the call it answers. */
function toChatHistory(messages: readonly ChatMessage[]): ChatHistoryItem[] {
  const results = new Map(messages.flatMap((m) => (m.role === "tool" && m.toolCallId ? [[m.toolCallId, m.content] as const] : [])));
  const answered = new Set<string>();
  const history: ChatHistoryItem[] = [];
  for (const message of messages) {
    switch (message.role) {
      case "system":
      case "developer":
        history.push({ type: "system", text: message.content });
        break;
      case "user":
        history.push({ type: "user", text: message.content });
        break;
      case "assistant": {
        const calls = (message.toolCalls ?? []).map((call) => toFunctionCall(call, results, answered));
        history.push({ type: "model", response: [...(message.content ? [message.content] : []), ...calls] });
        break;
      }
      case "tool":
        if (!message.toolCallId || !answered.has(message.toolCallId)) {
          throw new Error(`a tool message (tool_call_id ${message.toolCallId ?? "missing"}) answers no earlier assistant tool call`);
        }
        break;
    }
  }
  return history;
}

const ToolCall = z.object({ id: z.string(), function: z.object({ name: z.string(), arguments: z.string() }) });
const FunctionTool = z.object({
  type: z.literal("function"),
  function: z.object({
    name: z.string(),
    description: z.string().optional(),
    parameters: z.record(z.string(), z.unknown()).optional(),
  }),
});

function toFunctionCall(call: unknown, results: ReadonlyMap<string, string>, answered: Set<string>): ChatModelFunctionCall {
  const parsed = ToolCall.safeParse(call);
  if (!parsed.success) throw new Error("an assistant tool call is not an OpenAI function call");
  const { id, function: fn } = parsed.data;
  answered.add(id);
  return { type: "functionCall", name: fn.name, params: parseArguments(fn.arguments), result: results.get(id) ?? "" };
}

function parseArguments(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text; // the model wrote arguments that are not JSON: render them as they were
  }
}

function toFunctions(tools: readonly unknown[]): ChatModelFunctions | undefined {
  if (tools.length === 0) return undefined;
  const functions: Record<string, ChatModelFunctions[string]> = {};
  for (const tool of tools) {
    const parsed = FunctionTool.safeParse(tool);
    if (!parsed.success) throw new Error("only function tools are supported");
    const { name, description, parameters } = parsed.data.function;
    // node-llama-cpp types parameters as its GBNF schema subset; here it only documents them in the prompt.
    functions[name] = { description, params: parameters as ChatModelFunctions[string]["params"] };
  }
  return functions;
}

/** A stop trigger as text, or nothing when it involves a built-in special token (EOS/EOT stop decoding anyway). */
function plainText(lib: NodeLlamaCpp, trigger: LlamaText): string[] {
  let text = "";
  for (const value of trigger.values) {
    if (typeof value === "string") text += value;
    else if (value instanceof lib.SpecialTokensText) text += value.value;
    else return [];
  }
  return text === "" ? [] : [text];
}

/** Runs the sampling loop on `sequence` until end of generation, a stop string, the token limit or the signal. */
async function decode(
  loaded: LoadedModel,
  sequence: LlamaContextSequence,
  prompt: RenderedPrompt,
  request: GenerationRequest,
  sink: GenerationSink,
  signal: AbortSignal,
): Promise<GenerationResult> {
  const { params } = request;
  const room = sequence.contextSize - prompt.tokens.length;
  if (room <= 0) {
    throw new Error(
      `the prompt is ${prompt.tokens.length} tokens, but '${loaded.info.id}' holds at most ${sequence.contextSize} tokens`,
    );
  }
  const limit = Math.min(params.maxTokens ?? room, room);
  const text = new TokenText(loaded.model, prompt.tokens);
  const stops = new StopMatcher([...(params.stop ?? []), ...prompt.stops]);
  if (prompt.openedWith) sink.text(prompt.openedWith, 0);

  let completionTokens = 0;
  let unsentTokens = 0;
  let finishReason: FinishReason = "stop"; // the loop ending by itself means an end-of-generation token
  const send = (piece: string) => {
    if (piece === "") return;
    sink.text(piece, unsentTokens);
    unsentTokens = 0;
  };
  await prefill(sequence, prompt.tokens.slice(0, -1), signal);
  if (signal.aborted) return { finishReason, usage: { promptTokens: prompt.tokens.length, completionTokens } };
  const tokens = sequence.evaluate(prompt.tokens.slice(-1), {
    temperature: params.temperature ?? 1, // OpenAI's default
    ...(params.topP === undefined ? {} : { topP: params.topP }),
    ...(params.seed === undefined ? {} : { seed: params.seed }),
  });
  for await (const token of tokens) {
    if (signal.aborted) break; // the token decoded meanwhile is dropped: decoding stops within one step
    completionTokens++;
    unsentTokens++;
    const matched = stops.push(text.push(token));
    send(matched.text);
    if (matched.stopped) break;
    if (completionTokens >= limit) {
      finishReason = "length";
      break;
    }
  }
  if (!signal.aborted && !stops.stopped) send(stops.push(text.flush()).text + stops.flush());
  return { finishReason, usage: { promptTokens: prompt.tokens.length, completionTokens } };
}

/** Evaluates prompt tokens one batch at a time, so that an abort during a long prompt takes effect at the next batch. */
async function prefill(sequence: LlamaContextSequence, tokens: readonly Token[], signal: AbortSignal): Promise<void> {
  const batch = sequence.context.batchSize;
  for (let start = 0; start < tokens.length && !signal.aborted; start += batch) {
    await sequence.evaluateWithoutGeneratingNewTokens(tokens.slice(start, start + batch));
  }
}

/** Turns generated tokens into text incrementally, holding back bytes of a character that is not complete yet. */
class TokenText {
  private pending: Token[] = [];
  private previous: Token[];

  constructor(
    private readonly model: LlamaModel,
    promptTokens: readonly Token[],
  ) {
    this.previous = promptTokens.slice(-DETOKENIZE_CONTEXT_TOKENS);
  }

  push(token: Token): string {
    this.pending.push(token);
    const text = this.model.detokenize(this.pending, true, this.previous);
    if (text.endsWith("\uFFFD") && this.pending.length < 4) return ""; // a UTF-8 sequence spans up to 4 byte tokens
    return this.take(text);
  }

  flush(): string {
    return this.pending.length === 0 ? "" : this.take(this.model.detokenize(this.pending, true, this.previous));
  }

  private take(text: string): string {
    this.previous = [...this.previous, ...this.pending].slice(-DETOKENIZE_CONTEXT_TOKENS);
    this.pending = [];
    return text;
  }
}

/** Finds stop strings in streamed text, holding back a tail that could still grow into one. */
class StopMatcher {
  private held = "";
  stopped = false;
  private readonly stops: string[];

  constructor(stops: readonly string[]) {
    this.stops = stops.filter((stop) => stop !== "");
  }

  /** Returns the text that is safe to send; once a stop string appears, the text from it on is dropped. */
  push(piece: string): { text: string; stopped: boolean } {
    if (this.stopped) return { text: "", stopped: true };
    const buffer = this.held + piece;
    const at = Math.min(...this.stops.map((stop) => buffer.indexOf(stop)).filter((index) => index >= 0));
    if (Number.isFinite(at)) {
      this.stopped = true;
      this.held = "";
      return { text: buffer.slice(0, at), stopped: true };
    }
    const keep = this.partialStopLength(buffer);
    this.held = buffer.slice(buffer.length - keep);
    return { text: buffer.slice(0, buffer.length - keep), stopped: false };
  }

  flush(): string {
    const rest = this.held;
    this.held = "";
    return rest;
  }

  /** Length of the longest end of `buffer` that is the beginning of a stop string. */
  private partialStopLength(buffer: string): number {
    let keep = 0;
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, buffer.length); n > keep; n--) {
        if (buffer.endsWith(stop.slice(0, n))) {
          keep = n;
          break;
        }
      }
    }
    return keep;
  }
}

/**
 * Hands out a context's sequences, one per running task, and queues tasks beyond that.
 * Each sequence is disposed after its task, which clears its cache and returns its slot to the context.
 */
class SequencePool {
  private free: number;
  private readonly waiting: Array<() => void> = [];

  constructor(
    private readonly context: LlamaContext,
    size: number,
  ) {
    this.free = size;
  }

  async acquire(signal: AbortSignal): Promise<LlamaContextSequence> {
    while (this.free === 0) await this.nextTurn(signal);
    if (signal.aborted) {
      if (this.free > 0) this.waiting.shift()?.(); // we may have been woken for this slot: pass it on
      throw signal.reason;
    }
    this.free--;
    try {
      return this.context.getSequence();
    } catch (error) {
      this.giveBack();
      throw error;
    }
  }

  async release(sequence: LlamaContextSequence): Promise<void> {
    try {
      await sequence.dispose();
    } finally {
      this.giveBack();
    }
  }

  private giveBack(): void {
    this.free++;
    this.waiting.shift()?.();
  }

  private nextTurn(signal: AbortSignal): Promise<void> {
    signal.throwIfAborted();
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        const index = this.waiting.indexOf(wake);
        if (index >= 0) this.waiting.splice(index, 1);
        reject(signal.reason);
      };
      const wake = () => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      };
      this.waiting.push(wake);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }
}
