// POST /v1/messages and /v1/messages/count_tokens: Anthropic's Messages API as a dialect of the task route.
import type { Context } from "hono";
import { nanoid } from "nanoid";
import { ModelNotFoundError } from "../master/errors.js";
import type { Master } from "../master/master.js";
import type { ModelInfo } from "../worker-protocol/index.js";
import { anthropicErrorBody, anthropicErrorResponse } from "./anthropic-errors.js";
import type { RequestLimits } from "./chat-request.js";
import {
  type CountTokensRequest,
  type MessagesRequest,
  parseCountTokensRequest,
  parseMessagesRequest,
  reasoningModeOf,
  toChatMessages,
  toTaskRequest,
} from "./messages-request.js";
import { MessageCollector, MessageEventWriter, PING_FRAME, replyStopOf, type ReplyIdentity } from "./messages-response.js";
import { type Dialect, readJson, taskRoute, type TaskRouteOptions } from "./task-route.js";

export const messagesDialect: Dialect<MessagesRequest> = {
  parse: parseMessagesRequest,
  model: (request) => request.model,
  streams: (request) => request.stream === true,
  check: capMaxTokens,
  paramNames: { response_format: "output_config.format" },
  toTask: toTaskRequest,
  reasoningMode: reasoningModeOf,
  // Claude Code puts its session in the user id.
  sessionKey: (request) => request.metadata?.user_id ?? undefined,
  errorResponse: anthropicErrorResponse,
  keepaliveFrame: PING_FRAME,
  streamEncoder: (request) => {
    const writer = new MessageEventWriter(replyIdentity(request));
    return {
      opening: () => writer.start(),
      deltas: (deltas) => writer.deltas(deltas),
      finished: (deltas, event, shaper) => writer.finish(deltas, replyStopOf(event, shaper), event.usage),
      failed: (deltas, error) => writer.fail(deltas, anthropicErrorBody(error).body),
    };
  },
  wholeReply: (request) => {
    const collector = new MessageCollector();
    const reply = replyIdentity(request);
    return {
      add: (deltas) => collector.add(deltas),
      body: (event, shaper) => collector.message(reply, replyStopOf(event, shaper), event.usage),
    };
  },
};

export function messagesHandler(master: Master, options: TaskRouteOptions) {
  return taskRoute(master, messagesDialect, options);
}

/**
 * A reply cannot outgrow the model's context, so a larger max_tokens is capped at the context length rather than
 * refused: Anthropic makes max_tokens required, and its clients send one sized for Claude (Claude Code asks for
 * 32,000 or more), which a local model with a smaller context would otherwise never serve. The cap changes nothing
 * the model could have produced.
 */
function capMaxTokens(request: MessagesRequest, model: ModelInfo | undefined): void {
  if (model !== undefined && request.max_tokens > model.contextLength) request.max_tokens = model.contextLength;
}

function replyIdentity(request: MessagesRequest): ReplyIdentity {
  return { id: `msg_${nanoid(24)}`, model: request.model };
}

/**
 * Characters per token for count_tokens' estimate. The worker protocol has no way to ask a worker to tokenize, so
 * the count is an estimate: about four characters of English or code per token, as for most BPE vocabularies.
 */
const CHARS_PER_TOKEN = 4;
/** What a chat template adds around each message (role markers, separators), in tokens. */
const TOKENS_PER_MESSAGE = 4;

/**
 * An estimate of a request's prompt tokens: the characters of every message (tool calls and tool results included)
 * and of the tool definitions as JSON, four to a token, plus four tokens per message for the template's markup.
 */
export function estimateInputTokens(request: CountTokensRequest): number {
  const messages = toChatMessages(request);
  let chars = 0;
  for (const message of messages) {
    chars += message.content.length;
    if (message.toolCalls !== undefined) chars += JSON.stringify(message.toolCalls).length;
  }
  if (request.tools !== undefined) chars += JSON.stringify(request.tools).length;
  return Math.ceil(chars / CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * messages.length;
}

/** POST /v1/messages/count_tokens: `{input_tokens}`, estimated (see estimateInputTokens). */
export function countTokensHandler(master: Master, limits: RequestLimits) {
  return async (c: Context): Promise<Response> => {
    try {
      const request = parseCountTokensRequest(await readJson(c), limits);
      c.set("model", request.model);
      if (!master.knowsModel(request.model)) throw new ModelNotFoundError(request.model);
      return c.json({ input_tokens: estimateInputTokens(request) });
    } catch (error) {
      return anthropicErrorResponse(error);
    }
  };
}
