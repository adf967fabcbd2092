// The size of a model's vocabulary: llama.cpp aborts the whole process on a token id beyond it, so every id a request
// names (logit_bias, token inputs) is checked against it first.
import type { LlamaModel } from "node-llama-cpp";

/** Tokens in the model's vocabulary, as its GGUF lists them, or undefined when the file does not. */
export function vocabularySize(model: LlamaModel): number | undefined {
  const tokens: unknown = model.fileInfo.metadata.tokenizer?.ggml?.tokens;
  return Array.isArray(tokens) ? tokens.length : undefined;
}
