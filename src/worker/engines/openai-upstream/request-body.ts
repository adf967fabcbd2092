// The body of the upstream's `POST /chat/completions`: every option of the task under the names the upstream servers read.
//
// The names are OpenAI's where OpenAI has one; the rest are those of vLLM, SGLang, llama-server and mlx_lm.server,
// which agree on `top_k` and `min_p`. The multiplicative repetition penalty is sent twice, as `repetition_penalty`
// (vLLM, SGLang, mlx_lm.server) and `repeat_penalty` (llama-server): each server reads its own name and ignores the
// other (vLLM logs it as ignored; Ollama's OpenAI endpoint ignores both). See docs/upstream-options.md.
import type { ChatMessage, ResponseFormat } from "../../../worker-protocol/index.js";
import type { GenerationRequest } from "../engine.js";

/**
 * Fields of the body that the client's own extra fields (`extraBody`) can never set: the relay depends on them (one
 * streamed choice of this model for these messages, with usage at the end).
 */
export const RESERVED_FIELDS: readonly string[] = ["model", "messages", "prompt", "stream", "stream_options", "n"];

/** The schema's name when the client gave none: OpenAI and vLLM require one. */
const DEFAULT_SCHEMA_NAME = "response";

/**
 * The request body. The client's extra fields go in first, so that every field the coordinator sets from the task
 * wins over an extra field of the same name, and the reserved fields are dropped from them whether set or not.
 */
export function chatCompletionBody(request: GenerationRequest): Record<string, unknown> {
  const { params } = request;
  const extra = Object.entries(request.extraBody ?? {}).filter(([name]) => !RESERVED_FIELDS.includes(name));
  const body: Record<string, unknown> = {
    model: request.model,
    messages: request.messages.map(toOpenAIMessage),
    stream: true,
    stream_options: { include_usage: true },
    max_tokens: params.maxTokens,
    temperature: params.temperature,
    top_p: params.topP,
    top_k: params.topK,
    min_p: params.minP,
    repetition_penalty: params.repetitionPenalty,
    repeat_penalty: params.repetitionPenalty,
    frequency_penalty: params.frequencyPenalty,
    presence_penalty: params.presencePenalty,
    logit_bias: params.logitBias,
    stop: params.stop?.length ? params.stop : undefined,
    seed: params.seed,
    response_format: request.responseFormat ? toOpenAIResponseFormat(request.responseFormat) : undefined,
    logprobs: request.logprobs ? true : undefined,
    // Not 0: llama-server then reports no logprobs at all; absent, it sends 20 alternatives, which the reply cuts back.
    top_logprobs: request.logprobs?.top || undefined,
    tools: request.tools?.length ? request.tools : undefined,
    tool_choice: request.toolChoice,
    parallel_tool_calls: request.parallelToolCalls,
    reasoning_effort: request.reasoningEffort,
    chat_template_kwargs: request.chatTemplateKwargs,
  };
  const set = Object.entries(body).filter(([, value]) => value !== undefined);
  return Object.fromEntries([...extra, ...set]);
}

/**
 * The body of `POST /completions` for a raw prompt: the same options, the prompt instead of messages, and none of the
 * chat template's fields (tools, template arguments).
 */
export function completionBody(request: GenerationRequest): Record<string, unknown> {
  const body = chatCompletionBody(request);
  delete body.messages;
  for (const field of ["tools", "tool_choice", "parallel_tool_calls", "reasoning_effort", "chat_template_kwargs", "top_logprobs"]) delete body[field];
  // The legacy form: logprobs is the number of alternatives.
  if (request.logprobs) body.logprobs = request.logprobs.top;
  return { ...body, prompt: request.prompt };
}

function toOpenAIMessage(message: ChatMessage): Record<string, unknown> {
  return {
    role: message.role === "developer" ? "system" : message.role, // local servers' templates rarely know "developer"
    content: message.parts?.length ? message.parts.map(toOpenAIContentPart) : message.content,
    ...(message.name ? { name: message.name } : {}),
    ...(message.toolCalls?.length ? { tool_calls: message.toolCalls } : {}),
    ...(message.toolCallId ? { tool_call_id: message.toolCallId } : {}),
  };
}

function toOpenAIContentPart(part: NonNullable<ChatMessage["parts"]>[number]): Record<string, unknown> {
  return part.type === "text" ? { type: "text", text: part.text } : { type: "image_url", image_url: { url: part.url } };
}

function toOpenAIResponseFormat(format: ResponseFormat): Record<string, unknown> {
  if (format.type === "json_object") return { type: "json_object" };
  const { name, schema, strict } = format;
  return { type: "json_schema", json_schema: { name: name ?? DEFAULT_SCHEMA_NAME, schema, ...(strict === undefined ? {} : { strict }) } };
}
