// The sampling loop of one task on its own context sequence: prompt in batches, then token by token until done.
import type { LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import type { FinishReason, SamplingParams } from "../../../worker-protocol/index.js";
import type { GenerationResult, GenerationSink } from "../engine.js";
import type { RenderedPrompt } from "./chat-template.js";
import { StopMatcher } from "./stop-matcher.js";
import { TokenText } from "./token-text.js";

export interface Generation {
  model: LlamaModel;
  sequence: LlamaContextSequence;
  prompt: RenderedPrompt;
  params: SamplingParams;
}

/** Runs the sampling loop until end of generation, a stop string, the token limit or the signal. */
export async function decode(generation: Generation, sink: GenerationSink, signal: AbortSignal): Promise<GenerationResult> {
  const { model, sequence, prompt, params } = generation;
  const room = sequence.contextSize - prompt.tokens.length;
  const limit = Math.min(params.maxTokens ?? room, room);
  const text = new TokenText(model, prompt.tokens);
  const stops = new StopMatcher(params.stop ?? [], prompt.stops);
  if (prompt.openedWith) sink.text(prompt.openedWith, 0);

  let completionTokens = 0;
  let unsentTokens = 0;
  let finishReason: FinishReason = "stop"; // the loop ending by itself means an end-of-generation token
  const send = (piece: string) => {
    if (piece === "") return;
    sink.text(piece, unsentTokens);
    unsentTokens = 0;
  };
  await prefill(sequence, prompt.tokens.slice(0, -1), sink, signal);
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
    // Flow control: while the client is not reading, the sampling loop waits here (the sequence keeps its state).
    const room = sink.ready();
    if (room) await room;
  }
  if (!signal.aborted && !stops.stopped) send(stops.push(text.flush()).text + stops.flush());
  const usage = { promptTokens: prompt.tokens.length, completionTokens };
  // Only a stop string of the request is named: a template's trigger ends the reply as an end-of-generation token would.
  return finishReason === "stop" && stops.stopSequence !== undefined ? { finishReason, usage, stopSequence: stops.stopSequence } : { finishReason, usage };
}

/**
 * Evaluates prompt tokens one batch at a time, so that an abort during a long prompt takes effect at the next batch,
 * and reports progress after each (a long prompt is not a stalled task).
 */
async function prefill(sequence: LlamaContextSequence, tokens: readonly Token[], sink: GenerationSink, signal: AbortSignal): Promise<void> {
  const batch = sequence.context.batchSize;
  const total = tokens.length + 1;
  for (let start = 0; start < tokens.length && !signal.aborted; start += batch) {
    await sequence.evaluateWithoutGeneratingNewTokens(tokens.slice(start, start + batch));
    sink.progress(Math.min(tokens.length, start + batch), total);
  }
}
