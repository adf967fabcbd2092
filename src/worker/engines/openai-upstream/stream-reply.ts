// The upstream's streamed chat completion chunks, turned back into the raw model text the master parses.
import { z } from "zod";
import type { FinishReason, TokenLogprob, Usage } from "../../../worker-protocol/index.js";
import type { GenerationResult, GenerationSink } from "../engine.js";

const ToolCallDelta = z.object({
  index: z.number().int().nonnegative().optional(),
  function: z.object({ name: z.string().nullish(), arguments: z.string().nullish() }).nullish(),
});
type ToolCallDelta = z.infer<typeof ToolCallDelta>;

/** OpenAI's -9999 stands for a probability too small to print; servers that print -inf as JSON send null. */
const Logprob = z
  .number()
  .nullable()
  .transform((value) => value ?? -9999);
const Bytes = z.array(z.number().int().min(0).max(255)).nullish();
const UpstreamLogprob = z.object({
  token: z.string(),
  logprob: Logprob,
  bytes: Bytes,
  top_logprobs: z.array(z.object({ token: z.string(), logprob: Logprob, bytes: Bytes })).nullish(),
});
type UpstreamLogprob = z.infer<typeof UpstreamLogprob>;

export const StreamChunk = z.object({
  choices: z
    .array(
      z.object({
        delta: z
          .object({
            content: z.string().nullish(),
            reasoning_content: z.string().nullish(), // llama-server, DeepSeek, SGLang
            reasoning: z.string().nullish(), // vLLM, Ollama
            tool_calls: z.array(ToolCallDelta).nullish(),
          })
          .nullish(),
        /** A legacy completion's text (POST /completions, for a raw prompt). */
        text: z.string().nullish(),
        finish_reason: z.string().nullish(),
        // vLLM: the matched stop string, or the stop token's id (a number), or null (end of sequence). Anything
        // unexpected here is ignored rather than failing the chunk.
        stop_reason: z.union([z.string(), z.number()]).nullish().catch(undefined),
        // The tokens of this delta; unusable logprobs are dropped rather than failing the reply's text.
        // Chat's `content` entries, or a legacy completion's parallel lists.
        logprobs: z
          .object({
            content: z.array(UpstreamLogprob).nullish(),
            tokens: z.array(z.string()).nullish(),
            token_logprobs: z.array(Logprob).nullish(),
            top_logprobs: z.array(z.record(z.string(), Logprob).nullable()).nullish(),
          })
          .nullish()
          .catch(undefined),
      }),
    )
    .nullish(),
  usage: z
    .object({
      prompt_tokens: z.number().int().nonnegative(),
      completion_tokens: z.number().int().nonnegative(),
      // OpenAI's, vLLM's (with prefix caching) and llama-server's count of prompt tokens served from their cache.
      prompt_tokens_details: z.object({ cached_tokens: z.number().int().nonnegative().nullish() }).nullish().catch(undefined),
    })
    .nullish(),
  error: z.union([z.string(), z.object({ message: z.string() })]).nullish(),
});
export type StreamChunk = z.infer<typeof StreamChunk>;

/** Rebuilds raw model text from the upstream's deltas and keeps the counts. */
export class UpstreamReply {
  private thinking = false;
  private toolCall: { index: number; hasArguments: boolean } | undefined;
  private chunks = 0;
  private usage: Usage | undefined;
  private finishReason: FinishReason = "stop";
  private stopSequence: string | undefined;

  /**
   * `requestedStops`: the task's stop strings, the only ones the reply may be said to have ended at; `logprobsTop`:
   * the task asked for logprobs with this many alternatives (undefined: it did not ask).
   */
  constructor(
    private readonly sink: GenerationSink,
    private readonly requestedStops: readonly string[] = [],
    private readonly logprobsTop?: number,
  ) {}

  apply(chunk: StreamChunk): void {
    if (chunk.usage) {
      const cached = chunk.usage.prompt_tokens_details?.cached_tokens;
      this.usage = {
        promptTokens: chunk.usage.prompt_tokens,
        completionTokens: chunk.usage.completion_tokens,
        ...(cached != null && cached > 0 && { cachedTokens: Math.min(cached, chunk.usage.prompt_tokens) }),
      };
    }
    const choice = chunk.choices?.[0];
    if (!choice) return;
    if (choice.finish_reason) this.finishReason = toFinishReason(choice.finish_reason);
    const named = choice.stop_reason;
    if (typeof named === "string" && this.requestedStops.includes(named)) this.stopSequence = named;
    const delta = choice.delta;
    let text = "";
    const reasoning = delta?.reasoning_content || delta?.reasoning;
    if (reasoning) {
      text += this.closeToolCall() + (this.thinking ? "" : "<think>") + reasoning;
      this.thinking = true;
    }
    if (delta?.content) text += this.closeThinking() + this.closeToolCall() + delta.content;
    if (choice.text) text += choice.text;
    for (const call of delta?.tool_calls ?? []) text += this.closeThinking() + this.toolCallText(call);
    if (text === "") return;
    this.chunks++;
    const logprobs = this.logprobsTop === undefined ? undefined : (choice.logprobs?.content ?? legacyEntries(choice.logprobs));
    if (logprobs?.length) this.sink.text(text, undefined, logprobs.map((entry) => toTokenLogprob(entry, this.logprobsTop ?? 0)));
    else this.sink.text(text);
  }

  finish(): GenerationResult {
    const tail = this.closeThinking() + this.closeToolCall();
    if (tail) this.sink.text(tail, 0);
    const result: GenerationResult = { finishReason: this.finishReason, usage: this.usage ?? { promptTokens: 0, completionTokens: this.chunks } };
    if (this.finishReason === "stop" && this.stopSequence !== undefined) result.stopSequence = this.stopSequence;
    return result;
  }

  private toolCallText(call: ToolCallDelta): string {
    const index = call.index ?? this.toolCall?.index ?? 0;
    let text = "";
    if (this.toolCall?.index !== index) {
      text += this.closeToolCall();
      text += `<tool_call>{"name": ${JSON.stringify(call.function?.name ?? "")}, "arguments": `;
      this.toolCall = { index, hasArguments: false };
    }
    const args = call.function?.arguments ?? "";
    if (args) this.toolCall.hasArguments = true;
    return text + args;
  }

  private closeThinking(): string {
    if (!this.thinking) return "";
    this.thinking = false;
    return "</think>";
  }

  private closeToolCall(): string {
    if (!this.toolCall) return "";
    const text = this.toolCall.hasArguments ? "}</tool_call>" : "{}}</tool_call>";
    this.toolCall = undefined;
    return text;
  }
}

type ChoiceLogprobs = NonNullable<NonNullable<StreamChunk["choices"]>[number]["logprobs"]>;

/** A legacy completion's logprobs (parallel lists of tokens, logprobs and alternatives) as chat's entries. */
function legacyEntries(logprobs: ChoiceLogprobs | null | undefined): UpstreamLogprob[] | undefined {
  const tokens = logprobs?.tokens;
  if (!tokens) return undefined;
  return tokens.map((token, i) => ({
    token,
    logprob: logprobs.token_logprobs?.[i] ?? -9999,
    top_logprobs: Object.entries(logprobs.top_logprobs?.[i] ?? {}).map(([alternative, logprob]) => ({ token: alternative, logprob })),
  }));
}

/**
 * OpenAI's logprob entry in the protocol's shape, with at most `top` alternatives: servers that default to more when
 * none are asked for (llama-server sends 20) are cut back to what the client asked.
 */
function toTokenLogprob(entry: UpstreamLogprob, top: number): TokenLogprob {
  const alternatives = (entry.top_logprobs ?? []).slice(0, top).map(({ token, logprob, bytes }) => ({ token, logprob, ...(bytes ? { bytes } : {}) }));
  return {
    token: entry.token,
    logprob: entry.logprob,
    ...(entry.bytes ? { bytes: entry.bytes } : {}),
    ...(top > 0 ? { top: alternatives } : {}),
  };
}

function toFinishReason(reason: string): FinishReason {
  if (reason === "length") return "length";
  if (reason === "tool_calls" || reason === "function_call") return "tool_calls";
  return "stop";
}
