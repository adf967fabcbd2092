// The Responses API's streamed reply: `event: <type>` + `data: <json>` frames numbered by `sequence_number`, from
// response.created to response.completed (or .incomplete / .failed), with each output item opened, grown and closed.
import type { CoordinatorError } from "../master/errors.js";
import type { FinishReason, Usage } from "../worker-protocol/index.js";
import type { Delta } from "./chat-response.js";
import { describeError } from "./errors.js";
import type { StreamEncoder } from "./relay.js";
import {
  type OutputItem,
  type OutputLogprob,
  type OutputText,
  type ReasoningText,
  type ReasoningForm,
  type SummaryText,
  textPartOf,
  type ResponseBody,
  type OutputListener,
  ResponseObject,
  ResponseOutput,
  type ResponseFailure,
  type ResponseState,
  responseUsage,
} from "./responses-output.js";
import { eventFrame } from "./sse.js";

interface ItemPosition {
  item_id: string;
  output_index: number;
}

/** One event shape per type in `Type` (a union of types makes a union of events). */
type Each<Type extends string, Fields> = Type extends unknown ? { type: Type } & Fields : never;

/** Every event this encoder sends, but for its `sequence_number` (test/responses.test.ts holds them to the SDK's types). */
export type ResponseEventBody =
  | Each<"response.created" | "response.in_progress" | "response.completed" | "response.incomplete" | "response.failed", { response: ResponseBody }>
  | Each<"response.output_item.added" | "response.output_item.done", { output_index: number; item: OutputItem }>
  | Each<"response.content_part.added" | "response.content_part.done", ItemPosition & { content_index: 0; part: OutputText | ReasoningText }>
  | Each<"response.output_text.delta", ItemPosition & { content_index: 0; delta: string; logprobs: OutputLogprob[] }>
  | Each<"response.output_text.done", ItemPosition & { content_index: 0; text: string; logprobs: OutputLogprob[] }>
  | Each<"response.reasoning_text.delta", ItemPosition & { content_index: 0; delta: string }>
  | Each<"response.reasoning_text.done", ItemPosition & { content_index: 0; text: string }>
  | Each<"response.reasoning_summary_part.added" | "response.reasoning_summary_part.done", ItemPosition & { summary_index: 0; part: SummaryText }>
  | Each<"response.reasoning_summary_text.delta", ItemPosition & { summary_index: 0; delta: string }>
  | Each<"response.reasoning_summary_text.done", ItemPosition & { summary_index: 0; text: string }>
  | Each<"response.function_call_arguments.delta", ItemPosition & { delta: string }>
  | Each<"response.function_call_arguments.done", ItemPosition & { name: string; arguments: string }>;

export type ResponseStreamEvent = ResponseEventBody extends infer Event ? (Event extends unknown ? Event & { sequence_number: number } : never) : never;

/** The event types that carry a piece of an item's text, by item type. */
const DELTA_EVENTS = {
  message: "response.output_text.delta",
  reasoning: "response.reasoning_text.delta",
  function_call: "response.function_call_arguments.delta",
} as const;

/**
 * Writes one reply's events. Every event goes through `event()` (one JSON.stringify of a typed object), except the
 * per-token deltas: their constant part is serialised once per item, so a token costs one JSON.stringify of its text.
 */
class ResponseEvents implements OutputListener {
  private sequence = 0;
  private frames = "";
  /** The delta frame of the item receiving text, up to its sequence number. */
  private deltaHead = "";
  private deltaIndex = -1;

  constructor(private readonly reasoningForm: ReasoningForm) {}

  /** The frames written since the last call, taken. */
  take(): string {
    const frames = this.frames;
    this.frames = "";
    return frames;
  }

  event(event: ResponseEventBody): void {
    this.frames += eventFrame(event.type, JSON.stringify({ ...event, sequence_number: this.sequence++ }));
  }

  added(item: OutputItem, index: number): void {
    this.event({ type: "response.output_item.added", output_index: index, item });
    if (item.type === "message") {
      const part: OutputText = { type: "output_text", text: "", annotations: [], logprobs: [] };
      this.event({ type: "response.content_part.added", item_id: item.id, output_index: index, content_index: 0, part });
    } else if (item.type === "reasoning" && this.reasoningForm === "summary") {
      const part: SummaryText = { type: "summary_text", text: "" };
      this.event({ type: "response.reasoning_summary_part.added", item_id: item.id, output_index: index, summary_index: 0, part });
    } else if (item.type === "reasoning") {
      const part: ReasoningText = { type: "reasoning_text", text: "" };
      this.event({ type: "response.content_part.added", item_id: item.id, output_index: index, content_index: 0, part });
    }
  }

  text(item: OutputItem, index: number, text: string, logprobs?: readonly OutputLogprob[]): void {
    if (logprobs !== undefined && item.type === "message") {
      const at = { item_id: item.id, output_index: index, content_index: 0 as const };
      this.event({ type: "response.output_text.delta", ...at, delta: text, logprobs: [...logprobs] });
      return;
    }
    if (index !== this.deltaIndex) {
      const summary = item.type === "reasoning" && item.summary.length > 0;
      const type = summary ? "response.reasoning_summary_text.delta" : DELTA_EVENTS[item.type];
      const position = item.type === "function_call" ? "" : summary ? `"summary_index":0,` : `"content_index":0,`;
      const logprobs = item.type === "message" ? `"logprobs":[],` : "";
      this.deltaHead = `event: ${type}\ndata: {"type":"${type}","item_id":${JSON.stringify(item.id)},"output_index":${index},${position}${logprobs}"sequence_number":`;
      this.deltaIndex = index;
    }
    this.frames += `${this.deltaHead}${this.sequence++},"delta":${JSON.stringify(text)}}\n\n`;
  }

  done(item: OutputItem, index: number): void {
    const at = { item_id: item.id, output_index: index };
    if (item.type === "function_call") {
      this.event({ type: "response.function_call_arguments.done", ...at, name: item.name, arguments: item.arguments });
    } else if (item.type === "reasoning" && item.summary.length > 0) {
      const part = item.summary[0] as SummaryText;
      this.event({ type: "response.reasoning_summary_text.done", ...at, summary_index: 0, text: part.text });
      this.event({ type: "response.reasoning_summary_part.done", ...at, summary_index: 0, part });
    } else {
      const part = (textPartOf(item) as OutputText | ReasoningText | undefined) ?? { type: "reasoning_text", text: "" };
      if (part.type === "output_text") this.event({ type: "response.output_text.done", ...at, content_index: 0, text: part.text, logprobs: part.logprobs });
      else this.event({ type: "response.reasoning_text.done", ...at, content_index: 0, text: part.text });
      this.event({ type: "response.content_part.done", ...at, content_index: 0, part });
    }
    this.event({ type: "response.output_item.done", output_index: index, item });
    if (index === this.deltaIndex) this.deltaIndex = -1;
  }
}

/** What a failed response tells its client, in one of OpenAI's failure codes (the specific code goes to the log). */
export function responseFailure(error: unknown): ResponseFailure {
  const described = describeError(error);
  const code = described.status === 429 ? "rate_limit_exceeded" : described.status === 400 ? "invalid_prompt" : "server_error";
  return { code, message: described.message };
}

/** How a finished task ends its response: completed, or incomplete when it stopped at its token limit. */
export function finalState(finishReason: FinishReason, usage: Usage, output: OutputItem[], reasoningTokens = 0): ResponseState {
  const state: ResponseState = { status: "completed", output, usage: responseUsage(usage, reasoningTokens) };
  if (finishReason === "length") {
    state.status = "incomplete";
    state.incompleteReason = "max_output_tokens";
  }
  return state;
}

/** The encoder for one streamed Responses API reply. */
export function responseEvents(response: ResponseObject, reasoningForm: ReasoningForm): StreamEncoder {
  const events = new ResponseEvents(reasoningForm);
  const output = new ResponseOutput(events, reasoningForm);
  return {
    opening: () => {
      const inProgress = response.with({ status: "in_progress", output: [] });
      events.event({ type: "response.created", response: inProgress });
      events.event({ type: "response.in_progress", response: inProgress });
      return events.take();
    },
    deltas: (deltas: readonly Delta[]) => {
      output.add(deltas);
      return events.take();
    },
    finished: (deltas, event, shaper) => {
      output.add(deltas);
      const state = finalState(event.finishReason, event.usage, output.items, shaper.reasoningTokens);
      output.close(state.status === "completed" ? "completed" : "incomplete");
      const type = state.status === "completed" ? "response.completed" : "response.incomplete";
      events.event({ type, response: response.with(state) });
      return events.take();
    },
    failed: (deltas, error: CoordinatorError) => {
      output.add(deltas);
      output.close("incomplete");
      events.event({ type: "response.failed", response: response.with({ status: "failed", output: output.items, error: responseFailure(error) }) });
      return events.take();
    },
  };
}
