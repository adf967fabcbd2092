// The sampling loop of one task on its own context sequence: the prompt past what the sequence already holds, in
// batches, then token by token until done.
import type { LlamaContextSequence, LlamaGrammar, LlamaModel, Token } from "node-llama-cpp";
import type { FinishReason, SamplingParams, TaskAssigned } from "../../../worker-protocol/index.js";
import type { GenerationResult, GenerationSink } from "../engine.js";
import type { NodeLlamaCpp } from "./backend.js";
import type { RenderedPrompt } from "./chat-template.js";
import { LogprobRecorder, PendingLogprobs } from "./logprobs.js";
import { evaluateOptions } from "./sampling.js";
import { keepSharedPrefix } from "./sequence-pool.js";
import { StopMatcher } from "./stop-matcher.js";
import { DETOKENIZE_CONTEXT_TOKENS, TokenText } from "./token-text.js";

export interface Generation {
  lib: NodeLlamaCpp;
  model: LlamaModel;
  sequence: LlamaContextSequence;
  prompt: RenderedPrompt;
  params: SamplingParams;
  /** Constrains every output token (response_format, a forced tool call). */
  grammar?: LlamaGrammar;
  /** Report each token's logprob with this many alternatives. */
  logprobs?: TaskAssigned["logprobs"];
}

/** Runs the sampling loop until end of generation, a stop string, the token limit or the signal. */
export async function decode(generation: Generation, sink: GenerationSink, signal: AbortSignal): Promise<GenerationResult> {
  const { lib, model, sequence, prompt, params, grammar, logprobs } = generation;
  const room = sequence.contextSize - prompt.tokens.length;
  const limit = Math.min(params.maxTokens ?? room, room);
  const text = new TokenText(model, prompt.tokens);
  const stops = new StopMatcher(params.stop ?? [], prompt.stops);
  if (prompt.openedWith) sink.text(prompt.openedWith, 0);

  const recorder = logprobs && new LogprobRecorder(model, logprobs.top);
  const pending = new PendingLogprobs();
  const completion: Token[] = [];
  let completionTokens = 0;
  let unsentTokens = 0;
  let sentChars = 0;
  let finishReason: FinishReason = "stop"; // the loop ending by itself means an end-of-generation token
  const send = (piece: string, cut = false) => {
    if (piece === "") return;
    sentChars += piece.length;
    if (recorder) sink.text(piece, unsentTokens, pending.take(sentChars, cut));
    else sink.text(piece, unsentTokens);
    unsentTokens = 0;
  };
  // Before the sequence is touched: a request the sampler refuses (logit_bias) costs no cached prompt.
  const options = evaluateOptions(lib, model, params, completion, grammar);
  const cachedTokens = await keepSharedPrefix(sequence, prompt.tokens);
  const usage = () => ({ promptTokens: prompt.tokens.length, completionTokens, cachedTokens });
  await prefill(sequence, prompt.tokens, cachedTokens, sink, signal);
  if (signal.aborted) return { finishReason, usage: usage() };
  const metadata = { confidence: recorder !== undefined, probabilities: (logprobs?.top ?? 0) > 0 };
  for await (const sampled of sequence.evaluateWithMetadata(prompt.tokens.slice(-1), metadata, options)) {
    if (signal.aborted) break; // the token decoded meanwhile is dropped: decoding stops within one step
    // Models that cannot erase the end of their state reuse a prefix from a checkpoint: one at the end of the prompt.
    if (completionTokens === 0 && sequence.needsCheckpoints) await sequence.takeCheckpoint();
    const { token } = sampled;
    const context = recorder ? [...prompt.tokens.slice(-DETOKENIZE_CONTEXT_TOKENS), ...completion.slice(-DETOKENIZE_CONTEXT_TOKENS)] : [];
    completion.push(token);
    completionTokens++;
    unsentTokens++;
    const piece = text.push(token);
    if (recorder) pending.add(recorder.entry(sampled, piece, context));
    const matched = stops.push(piece);
    send(matched.text, matched.stopped);
    if (matched.stopped) break;
    if (completionTokens >= limit) {
      finishReason = "length";
      break;
    }
    // Flow control: while the client is not reading, the sampling loop waits here (the sequence keeps its state).
    const room = sink.ready();
    if (room) await room;
  }
  if (!signal.aborted && !stops.stopped) send(stops.push(text.flush()).text + stops.flush(), true);
  // Only a stop string of the request is named: a template's trigger ends the reply as an end-of-generation token would.
  return finishReason === "stop" && stops.stopSequence !== undefined
    ? { finishReason, usage: usage(), stopSequence: stops.stopSequence }
    : { finishReason, usage: usage() };
}

/**
 * Evaluates the prompt's tokens after the `cached` ones, all but the last (evaluated with the first output token), one
 * batch at a time, so that an abort during a long prompt takes effect at the next batch (each batch is evaluated
 * whole: the sequence never holds part of one), and reports progress from `cached` on, after each batch (a long
 * prompt is not a stalled task).
 */
async function prefill(sequence: LlamaContextSequence, tokens: Token[], cached: number, sink: GenerationSink, signal: AbortSignal): Promise<void> {
  const batch = sequence.context.batchSize;
  const end = tokens.length - 1;
  sink.progress(cached, tokens.length);
  for (let start = cached; start < end && !signal.aborted; start += batch) {
    await sequence.evaluateWithoutGeneratingNewTokens(tokens.slice(start, Math.min(end, start + batch)));
    sink.progress(Math.min(end, start + batch), tokens.length);
  }
}
