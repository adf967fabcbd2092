// One model of the llama engine from file to served: its weights, its chat context and sequences, its embedder, and
// what it announces; the one path by which models given at start and models loaded on command are set up and freed.
import type { ChatWrapper, GgufFileInfo, Llama, LlamaContext, LlamaModel } from "node-llama-cpp";
import { CAPABILITIES, type ModelInfo } from "../../../worker-protocol/index.js";
import type { NodeLlamaCpp } from "./backend.js";
import { detectFormat } from "./chat-template.js";
import { Embedder, isEmbeddingOnly } from "./embedding.js";
import { canForceJson, canForceToolCall } from "./output-grammar.js";
import { SequencePool } from "./sequence-pool.js";

export interface LoadedModel {
  info: ModelInfo;
  model: LlamaModel;
  /** Text generation; an embedding-only model has none. */
  chat?: ChatModel;
  embedder?: Embedder;
}

export interface ChatModel {
  context: LlamaContext;
  chatWrapper: ChatWrapper;
  sequences: SequencePool;
}

/** How one model is set up. */
export interface ModelPlan {
  /** What it is served as. */
  id: string;
  path: string;
  /** Tokens per sequence; absent: what it was trained on, as memory allows (node-llama-cpp fits it). */
  contextLength?: number;
  /** Tasks it serves at once, each on its own context sequence. */
  sequences: number;
  /** CPU threads per context; absent: node-llama-cpp's choice, or 1 for a tiny model. */
  threads?: number;
  /** A text model also computes embeddings. */
  embeddings: boolean;
  promptCache: boolean;
}

/** What a model file announces, known from its metadata alone (so for a model of the library before it is loaded). */
export interface ModelKind {
  /** An embedding-only model: no chat context, no generation. */
  embeddingOnly: boolean;
  format?: string;
  capabilities: string[];
}

const TINY_MODEL_BYTES = 32 * 1024 * 1024;

export function describeKind(fileInfo: GgufFileInfo, embeddings: boolean): ModelKind {
  if (isEmbeddingOnly(fileInfo)) return { embeddingOnly: true, capabilities: [CAPABILITIES.embeddings] };
  const format = detectFormat(fileInfo);
  return { embeddingOnly: false, format, capabilities: capabilities(format, embeddings) };
}

/**
 * Loads the model file and makes what serves it. `progress` gets the weights' loading, 0 to 1. Aborting `signal`
 * gives the load up: the promise rejects with its reason and whatever was made is disposed.
 */
export async function loadModel(
  lib: NodeLlamaCpp,
  llama: Llama,
  plan: ModelPlan,
  progress: (fraction: number) => void,
  signal?: AbortSignal,
): Promise<LoadedModel> {
  const model = await llama.loadModel({ modelPath: plan.path, onLoadProgress: progress, ...(signal && { loadSignal: signal }) });
  try {
    // node-llama-cpp gives up only while the weights load (and the context is made); an abort between is ours.
    signal?.throwIfAborted();
    const loaded = await serve(lib, model, plan, signal);
    signal?.throwIfAborted();
    return loaded;
  } catch (error) {
    await model.dispose(); // its context and sequences with it; an embedder makes nothing before its first task
    throw error;
  }
}

/** Frees everything the model holds: its embedding context, its chat context with its sequences, its weights. */
export async function unloadModel(loaded: LoadedModel): Promise<void> {
  try {
    await loaded.embedder?.close();
    await loaded.chat?.context.dispose();
  } finally {
    await loaded.model.dispose();
  }
}

async function serve(lib: NodeLlamaCpp, model: LlamaModel, plan: ModelPlan, signal?: AbortSignal): Promise<LoadedModel> {
  const { id } = plan;
  const threads = plan.threads ?? (model.size < TINY_MODEL_BYTES ? 1 : undefined);
  const kind = describeKind(model.fileInfo, plan.embeddings);
  if (kind.embeddingOnly) {
    // No chat context: its one context is the embedding context, of the model's own length unless told.
    const contextSize = plan.contextLength ?? model.trainContextSize;
    const info: ModelInfo = { id, contextLength: contextSize, capabilities: kind.capabilities };
    return { info, model, embedder: new Embedder(model, { id, contextSize, threads }) };
  }
  const context = await model.createContext({
    sequences: plan.sequences,
    contextSize: plan.contextLength ?? { max: model.trainContextSize },
    ...(threads !== undefined && { threads }),
    ...(signal && { createSignal: signal }),
  });
  const chat: ChatModel = {
    context,
    chatWrapper: lib.resolveChatWrapper(model),
    sequences: new SequencePool(context, plan.sequences, { promptCache: plan.promptCache }),
  };
  // The embedding context, made on the first embedding task, holds as many tokens as a chat sequence.
  const embedder = plan.embeddings ? new Embedder(model, { id, contextSize: context.contextSize, threads }) : undefined;
  const info: ModelInfo = { id, contextLength: context.contextSize, format: kind.format, capabilities: kind.capabilities };
  return { info, model, chat, embedder };
}

/** What the engine honours for a model of this output format (see docs/llama-options.md); never vision. */
function capabilities(format: string | undefined, embeddings: boolean): string[] {
  const chat = [
    CAPABILITIES.tools,
    ...(canForceToolCall(format) ? [CAPABILITIES.toolChoiceRequired] : []),
    CAPABILITIES.sampling,
    CAPABILITIES.logitBias,
    ...(canForceJson(format) ? [CAPABILITIES.jsonObject, CAPABILITIES.jsonSchema] : []),
    CAPABILITIES.logprobs,
    CAPABILITIES.rawPrompt,
  ];
  // A model that announces "embeddings" names "chat" too, or it would be taken for an embedding-only one.
  return embeddings ? [CAPABILITIES.chat, ...chat, CAPABILITIES.embeddings] : chat;
}
