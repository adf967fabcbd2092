// POST /v1/responses: OpenAI's Responses API as a dialect of the task route (one response object or SSE events).
// Stateless: every request carries its whole conversation, and nothing is stored (see docs/api.md).
import type { Master } from "../master/master.js";
import { errorResponse } from "./errors.js";
import { type ReasoningForm, ResponseObject, ResponseOutput } from "./responses-output.js";
import {
  checkMaxOutputTokens,
  parseResponsesRequest,
  type ResponsesRequest,
  responsesReasoningMode,
  toResponsesTask,
} from "./responses-request.js";
import { finalState, responseEvents } from "./responses-stream.js";
import { type Dialect, taskRoute, type TaskRouteOptions, type WholeReply } from "./task-route.js";

export const responsesDialect: Dialect<ResponsesRequest> = {
  parse: parseResponsesRequest,
  model: (request) => request.body.model,
  streams: (request) => request.body.stream === true,
  check: checkMaxOutputTokens,
  paramNames: { response_format: "text.format", messages: "input", logprobs: "include" },
  toTask: toResponsesTask,
  reasoningMode: responsesReasoningMode,
  sessionKey: (request) => request.body.prompt_cache_key ?? request.body.user ?? undefined,
  errorResponse,
  streamEncoder: (request) => responseEvents(new ResponseObject(request), reasoningFormOf(request)),
  wholeReply: (request) => wholeResponse(new ResponseObject(request), reasoningFormOf(request)),
};

/**
 * A request that asks for a reasoning summary gets the reasoning as one (the whole of it: no summary is made), so
 * clients that show only summaries (Codex, the Vercel AI SDK) show it; otherwise it is `reasoning_text` content.
 */
function reasoningFormOf(request: ResponsesRequest): ReasoningForm {
  return request.body.reasoning?.summary != null ? "summary" : "text";
}

export function responsesHandler(master: Master, options: TaskRouteOptions) {
  return taskRoute(master, responsesDialect, options);
}

/** The whole response object, its output items in the order the model made them. */
function wholeResponse(response: ResponseObject, reasoningForm: ReasoningForm): WholeReply {
  const output = new ResponseOutput(undefined, reasoningForm);
  return {
    add: (deltas) => output.add(deltas),
    body: (event, shaper) => {
      const state = finalState(event.finishReason, event.usage, output.items, shaper.reasoningTokens);
      output.close(state.status === "completed" ? "completed" : "incomplete");
      return response.with(state);
    },
  };
}
