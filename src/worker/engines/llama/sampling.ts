// A task's sampling parameters as node-llama-cpp's evaluation options (llama.cpp's sampler chain).
import type { LlamaGrammar, LlamaModel, SequenceEvaluateOptions, Token } from "node-llama-cpp";
import type { SamplingParams } from "../../../worker-protocol/index.js";
import { EngineRequestError } from "../engine.js";
import type { NodeLlamaCpp } from "./backend.js";
import { vocabularySize } from "./vocabulary.js";

/** Repetition penalties look at most this many of the latest completion tokens (llama.cpp's penalty window). */
const PENALTY_WINDOW = 1024;

/**
 * The options for `sequence.evaluate`. `completion` is the task's generated tokens so far (read at each step, for the
 * penalties); `grammar`, when given, constrains every token.
 */
export function evaluateOptions(
  lib: NodeLlamaCpp,
  model: LlamaModel,
  params: SamplingParams,
  completion: readonly Token[],
  grammar: LlamaGrammar | undefined,
): SequenceEvaluateOptions {
  const penalized = params.repetitionPenalty !== undefined || params.frequencyPenalty !== undefined || params.presencePenalty !== undefined;
  return {
    temperature: params.temperature ?? 1, // OpenAI's default
    ...(params.topP === undefined ? {} : { topP: params.topP }),
    ...(params.topK === undefined ? {} : { topK: params.topK }), // 0: no top-k cut (llama.cpp)
    ...(params.minP === undefined ? {} : { minP: params.minP }),
    ...(params.seed === undefined ? {} : { seed: params.seed }),
    ...(penalized && {
      repeatPenalty: {
        punishTokens: () => completion.slice(-PENALTY_WINDOW),
        maxPunishTokens: PENALTY_WINDOW,
        penalty: params.repetitionPenalty ?? 1, // node-llama-cpp would default to 1.1
        frequencyPenalty: params.frequencyPenalty ?? 0,
        presencePenalty: params.presencePenalty ?? 0,
      },
    }),
    ...(params.logitBias && { tokenBias: tokenBias(lib, model, params.logitBias) }),
    ...(grammar && { grammarEvaluationState: new lib.LlamaGrammarEvaluationState({ model, grammar }) }),
  };
}

/** OpenAI's logit_bias (token id → added logit; -100 bans the token) as node-llama-cpp's TokenBias. */
function tokenBias(lib: NodeLlamaCpp, model: LlamaModel, logitBias: Record<string, number>) {
  const vocabulary = vocabularySize(model);
  if (vocabulary === undefined) {
    throw new EngineRequestError("logit_bias is not supported for this model: its vocabulary size is unknown", "invalid_request");
  }
  const bias = new lib.TokenBias(model.tokenizer);
  for (const [id, value] of Object.entries(logitBias)) {
    const token = Number(id) as Token;
    // llama.cpp aborts the whole process on a token id outside the vocabulary: refuse it here.
    if (token >= vocabulary) throw new EngineRequestError(`logit_bias names token ${id}, but the model's vocabulary has ${vocabulary} tokens`, "invalid_request");
    if (model.isEogToken(token)) {
      throw new EngineRequestError(`logit_bias on token ${id}, an end-of-generation token, is not supported by the llama engine`, "invalid_request");
    }
    bias.set(token, value <= -100 ? "never" : { logit: value });
  }
  return bias;
}
