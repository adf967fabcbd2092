// POST /v1/chat/completions: OpenAI's chat completions as a dialect of the task route (one JSON body or SSE chunks).
import { nanoid } from "nanoid";
import type { Master } from "../master/master.js";
import type { ModelInfo } from "../worker-protocol/index.js";
import { type ChatCompletionRequest, parseChatRequest, reasoningModeOf, toTaskRequest } from "./chat-request.js";
import { ChunkSerializer, finishReasonOf, logprobsBody, reasoningKeys, ReplyCollector, usageBody } from "./chat-response.js";
import { errorResponse, InvalidRequestError, mapError } from "./errors.js";
import type { StreamEncoder } from "./relay.js";
import { dataFrames } from "./sse.js";
import { type Dialect, taskRoute, type TaskRouteOptions, type WholeReply } from "./task-route.js";

const DONE_FRAME = "data: [DONE]\n\n";

export const chatCompletionsDialect: Dialect<ChatCompletionRequest> = {
  parse: parseChatRequest,
  model: (request) => request.model,
  streams: (request) => request.stream === true,
  check: checkMaxTokens,
  toTask: toTaskRequest,
  reasoningMode: reasoningModeOf,
  sessionKey: (request) => request.prompt_cache_key ?? request.user,
  errorResponse,
  streamEncoder: (request, options) => {
    const reply = replyIdentity(request);
    const includeUsage = request.stream_options?.include_usage === true;
    const serializer = new ChunkSerializer(reply.id, reply.created, reply.model, includeUsage, options.reasoningField);
    return chatCompletionChunks(serializer, reply, includeUsage);
  },
  wholeReply: (request, options) => chatCompletion(replyIdentity(request), options, request.logprobs === true),
};

export function chatCompletionsHandler(master: Master, options: TaskRouteOptions) {
  return taskRoute(master, chatCompletionsDialect, options);
}

/** A reply cannot outgrow the model's context: refuse such a limit before queueing, in OpenAI's words. */
function checkMaxTokens(request: ChatCompletionRequest, model: ModelInfo | undefined): void {
  const param = request.max_completion_tokens != null ? "max_completion_tokens" : "max_tokens";
  const maxTokens = request[param];
  if (model === undefined || maxTokens == null || maxTokens <= model.contextLength) return;
  throw new InvalidRequestError(
    `${param} is too large: ${maxTokens}. The model '${model.id}' holds at most ${model.contextLength} tokens ` +
      `(prompt and completion), whereas you provided ${maxTokens}.`,
    param,
  );
}

interface ReplyIdentity {
  id: string;
  created: number;
  model: string;
}

function replyIdentity(request: ChatCompletionRequest): ReplyIdentity {
  return { id: `chatcmpl-${nanoid(24)}`, created: Math.floor(Date.now() / 1000), model: request.model };
}

/** The whole `chat.completion` object. */
function chatCompletion(reply: ReplyIdentity, options: TaskRouteOptions, withLogprobs: boolean): WholeReply {
  const collector = new ReplyCollector();
  return {
    add: (deltas) => collector.add(deltas),
    body: (event, shaper) => {
      const calledTools = collector.toolCalls.length > 0;
      // As OpenAI does: a reply that only calls tools has null content.
      const content = calledTools && collector.content === "" ? null : collector.content;
      const message: Record<string, unknown> = { role: "assistant", content, refusal: null };
      if (collector.reasoning) for (const key of reasoningKeys(options.reasoningField)) message[key] = collector.reasoning;
      if (collector.toolCalls.length > 0) message.tool_calls = collector.toolCalls.filter(Boolean);
      return {
        id: reply.id,
        object: "chat.completion",
        created: reply.created,
        model: reply.model,
        choices: [
          {
            index: 0,
            message,
            logprobs: withLogprobs ? logprobsBody(collector.logprobs) : null,
            finish_reason: finishReasonOf(event.finishReason, shaper),
          },
        ],
        usage: usageBody(event.usage, shaper.reasoningTokens),
      };
    },
  };
}

/** OpenAI's chat completion chunks as SSE `data:` frames, ending with `data: [DONE]`. */
function chatCompletionChunks(serializer: ChunkSerializer, reply: ReplyIdentity, includeUsage: boolean): StreamEncoder {
  return {
    deltas: (deltas) => dataFrames(serializer.deltas(deltas)),
    finished: (deltas, event, shaper) => {
      const chunks = serializer.deltas(deltas);
      chunks.push(serializer.finish(finishReasonOf(event.finishReason, shaper)));
      if (includeUsage) chunks.push(serializer.usage(event.usage, reply.id, reply.created, reply.model, shaper.reasoningTokens));
      return dataFrames(chunks) + DONE_FRAME;
    },
    failed: (deltas, error) => dataFrames([...serializer.deltas(deltas), JSON.stringify(mapError(error).body)]) + DONE_FRAME,
  };
}
