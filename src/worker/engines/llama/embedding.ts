// Embeddings on the llama engine: which models only embed, and a model's embedding context (made on its first
// embedding task), fed each input as the tokens node-llama-cpp's embedding context evaluates.
import type { GgufFileInfo, LlamaEmbeddingContext, LlamaModel, Token } from "node-llama-cpp";
import { normalizeEmbedding } from "../../../worker-protocol/index.js";
import { type EmbeddingRequest, type EmbeddingResult, type EmbeddingSink, EngineRequestError } from "../engine.js";
import { vocabularySize } from "./vocabulary.js";

/**
 * Encoder architectures of llama.cpp (the BERT family, T5's encoder, EmbeddingGemma): each token sees the whole input
 * and there is no head that writes text. Their GGUFs also declare `{arch}.attention.causal` false; the list covers
 * files that do not.
 */
const ENCODER_ARCHITECTURES = new Set([
  "bert",
  "modern-bert",
  "nomic-bert",
  "nomic-bert-moe",
  "neo-bert",
  "jina-bert-v2",
  "jina-bert-v3",
  "eurobert",
  "t5encoder",
  "gemma-embedding",
]);

/** llama.cpp's pooling types (`{arch}.pooling_type`) under which a long input may span several batches. */
const POOLING_NONE = 0; // node-llama-cpp then takes the last token's state
const POOLING_LAST = 3;

/**
 * Whether the model computes embeddings only: an encoder architecture, or a GGUF that declares non-causal attention.
 * Read from the file's metadata, so a model of the library is known for one before it is loaded.
 */
export function isEmbeddingOnly(fileInfo: GgufFileInfo): boolean {
  const { metadata, architectureMetadata } = fileInfo;
  return ENCODER_ARCHITECTURES.has(String(metadata.general.architecture)) || architectureMetadata.attention?.causal === false;
}

/**
 * Whether an input must be evaluated in one batch: llama.cpp pools (mean, CLS) over the last batch only, and a
 * non-causal model sees only its batch. A causal model that takes its last token's state carries a long input across
 * batches in its KV cache.
 */
export function needsWholeInputBatch(fileInfo: GgufFileInfo): boolean {
  const pooling = fileInfo.architectureMetadata.pooling_type;
  const pooled = pooling !== undefined && pooling >= 0 && pooling !== POOLING_NONE && pooling !== POOLING_LAST;
  return pooled || isEmbeddingOnly(fileInfo);
}

export interface EmbedderOptions {
  /** The model's id, for messages. */
  id: string;
  /** Tokens the embedding context holds; an input may have one fewer (node-llama-cpp's bound). */
  contextSize: number;
  /** CPU threads, as for the model's chat context. */
  threads?: number;
}

/**
 * One model's embeddings. Its embedding context is made on the first task and shared by all; node-llama-cpp evaluates
 * one input at a time on it (a lock in `getEmbeddingFor`), so concurrent tasks interleave input by input.
 */
export class Embedder {
  private context: Promise<LlamaEmbeddingContext> | undefined;

  constructor(
    private readonly model: LlamaModel,
    private readonly options: EmbedderOptions,
  ) {}

  /** The longest input, in tokens, the beginning and end tokens the model adds included. */
  get maxInputTokens(): number {
    return this.options.contextSize - 1;
  }

  /**
   * Embeds each input in order; stops between inputs when `signal` aborts. Every input is tokenized and checked before
   * the first is embedded, so a task with one input the model cannot take fails whole, before any work.
   */
  async embed(request: EmbeddingRequest, sink: EmbeddingSink, signal: AbortSignal): Promise<EmbeddingResult> {
    signal.throwIfAborted();
    const context = await this.open();
    const { inputs, truncate = false, dimensions } = request.embed;
    const fitted = inputs.map((input, index) => this.fit(context, this.tokensOf(input, index), index, truncate));
    let promptTokens = 0;
    for (const [index, { tokens, count }] of fitted.entries()) {
      signal.throwIfAborted();
      const { vector } = await context.getEmbeddingFor(tokens);
      signal.throwIfAborted();
      if (dimensions !== undefined && vector.length !== dimensions) {
        throw new EngineRequestError(`'${this.options.id}' makes vectors of ${vector.length} dimensions, not ${dimensions}`, "invalid_request");
      }
      // llama.cpp gives the raw hidden state (its server normalizes it; node-llama-cpp does not).
      sink.vector(normalizeEmbedding(vector), count);
      promptTokens += count;
      sink.progress(index + 1, fitted.length);
    }
    return { promptTokens };
  }

  /** Frees the embedding context, if one was made. */
  async close(): Promise<void> {
    const creating = this.context;
    this.context = undefined;
    // A failed creation has already failed the tasks that awaited it: nothing is left to free.
    const context = await creating?.catch(() => undefined);
    await context?.dispose();
  }

  private open(): Promise<LlamaEmbeddingContext> {
    if (this.context) return this.context;
    const creating = this.create();
    this.context = creating;
    // A failure reaches the tasks that await it; the next task tries again.
    creating.catch(() => {
      if (this.context === creating) this.context = undefined;
    });
    return creating;
  }

  private create(): Promise<LlamaEmbeddingContext> {
    const { contextSize, threads } = this.options;
    return this.model.createEmbeddingContext({
      contextSize,
      ...(needsWholeInputBatch(this.model.fileInfo) && { batchSize: contextSize }),
      ...(threads !== undefined && { threads }),
    });
  }

  /**
   * The input's own tokens: a text tokenized as node-llama-cpp's embedding context does (special-token markup stays
   * text), or token ids checked against the vocabulary. The context adds the beginning/end tokens the model wants.
   */
  private tokensOf(input: string | readonly number[], index: number): Token[] {
    const tokens = typeof input === "string" ? this.model.tokenize(input, false) : this.checkedIds(input, index);
    // llama.cpp cannot evaluate nothing, and a vector of no text would mean nothing (OpenAI refuses an empty input too).
    if (tokens.length === 0) throw new EngineRequestError(`input ${index} has no tokens: embed a text that is not empty`, "invalid_request");
    return tokens;
  }

  private checkedIds(ids: readonly number[], index: number): Token[] {
    const vocabulary = vocabularySize(this.model);
    if (vocabulary === undefined) {
      throw new EngineRequestError(`token inputs are not supported for '${this.options.id}': its vocabulary size is unknown`, "invalid_request");
    }
    const outside = ids.find((id) => id >= vocabulary);
    if (outside !== undefined) {
      throw new EngineRequestError(`input ${index} holds token ${outside}, but the vocabulary of '${this.options.id}' has ${vocabulary} tokens`, "invalid_request");
    }
    return ids as Token[];
  }

  /** The tokens to evaluate and their count with the added ones: cut at the end to fit when `truncate`, else refused. */
  private fit(context: LlamaEmbeddingContext, content: Token[], index: number, truncate: boolean): { tokens: Token[]; count: number } {
    const limit = this.maxInputTokens;
    const count = context.calculateInputLength(content);
    if (count <= limit) return { tokens: content, count };
    if (!truncate) {
      throw new EngineRequestError(
        `input ${index} is ${count} tokens, but '${this.options.id}' embeds at most ${limit} tokens at once`,
        "context_length_exceeded",
      );
    }
    const tokens = content.slice(0, limit - (count - content.length)); // the added beginning/end tokens stay
    return { tokens, count: context.calculateInputLength(tokens) };
  }
}
