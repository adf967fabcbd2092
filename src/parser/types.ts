// The incremental parser interface: model text in, typed events (reasoning, content, tool calls) out.

export type ParseEvent =
  | { kind: "content"; text: string }
  | { kind: "reasoning"; text: string }
  /** A tool call begins; `name` is complete, `id` is unique within the reply. */
  | { kind: "tool_call_start"; index: number; id: string; name: string }
  /** A fragment of the tool call's JSON arguments; fragments concatenate to the whole arguments text. */
  | { kind: "tool_call_args"; index: number; text: string }
  | { kind: "tool_call_end"; index: number };

export interface StreamParser {
  /** Feeds the next chunk of model output; returns what can be decided now, holding back only a possible partial tag. */
  feed(chunk: string): ParseEvent[];
  /** End of stream: flushes what was held back and closes any open section. */
  finish(): ParseEvent[];
  /** Set by finish() when the stream ended inside a section (e.g. `</think>` never came); undefined when it ended cleanly. */
  readonly unterminated?: OpenSection | undefined;
}

/** The section a stream ended inside when it was cut off before its closing markup. */
export type OpenSection = "reasoning" | "tool_call";

export type ParserWarningCode =
  /** Tool-call markup whose JSON could not be read as a call; its text was returned as content. */
  | "malformed_tool_call"
  /** A tool call was delivered but its arguments are not valid JSON (they were already streamed). */
  | "invalid_tool_arguments"
  /** The stream ended inside a tool call. */
  | "unterminated_tool_call"
  /** A reasoning close tag came without an opening one; text before it had already gone out as content. */
  | "unopened_reasoning_close";

export interface ParserWarning {
  code: ParserWarningCode;
  message: string;
  /** The model text involved, shortened to at most 200 characters. */
  excerpt?: string;
}

export interface ParserOptions {
  /** Called for recoverable oddities in the model output; the parser never throws on model text. */
  onWarning?: (warning: ParserWarning) => void;
  /** Makes tool-call ids; by default `call_` and 24 random letters and digits (9 letters and digits for "mistral"). */
  newToolCallId?: () => string;
}
