// OpenAI-shaped messages and tools as node-llama-cpp's chat history and functions, for the model's chat template.
import { z } from "zod";
import type { ChatHistoryItem, ChatModelFunctionCall, ChatModelFunctions } from "node-llama-cpp";
import type { ChatMessage } from "../../../worker-protocol/index.js";

/** The chat as node-llama-cpp's history; a tool result is rendered with the call it answers. */
export function toChatHistory(messages: readonly ChatMessage[]): ChatHistoryItem[] {
  const results = new Map(messages.flatMap((m) => (m.role === "tool" && m.toolCallId ? [[m.toolCallId, m.content] as const] : [])));
  const answered = new Set<string>();
  const history: ChatHistoryItem[] = [];
  for (const message of messages) {
    switch (message.role) {
      case "system":
      case "developer":
        history.push({ type: "system", text: message.content });
        break;
      case "user":
        history.push({ type: "user", text: message.content });
        break;
      case "assistant": {
        const calls = (message.toolCalls ?? []).map((call) => toFunctionCall(call, results, answered));
        history.push({ type: "model", response: [...(message.content ? [message.content] : []), ...calls] });
        break;
      }
      case "tool":
        if (!message.toolCallId || !answered.has(message.toolCallId)) {
          throw new Error(`a tool message (tool_call_id ${message.toolCallId ?? "missing"}) answers no earlier assistant tool call`);
        }
        break;
    }
  }
  return history;
}

/** The request's function tools, documented in the prompt by the chat template; undefined when there are none. */
export function toFunctions(tools: readonly unknown[]): ChatModelFunctions | undefined {
  if (tools.length === 0) return undefined;
  const functions: Record<string, ChatModelFunctions[string]> = {};
  for (const tool of tools) {
    const parsed = FunctionTool.safeParse(tool);
    if (!parsed.success) throw new Error("only function tools are supported");
    const { name, description, parameters } = parsed.data.function;
    // node-llama-cpp types parameters as its GBNF schema subset; here it only documents them in the prompt.
    functions[name] = { description, params: parameters as ChatModelFunctions[string]["params"] };
  }
  return functions;
}

const ToolCall = z.object({ id: z.string(), function: z.object({ name: z.string(), arguments: z.string() }) });
const FunctionTool = z.object({
  type: z.literal("function"),
  function: z.object({
    name: z.string(),
    description: z.string().optional(),
    parameters: z.record(z.string(), z.unknown()).optional(),
  }),
});

function toFunctionCall(call: unknown, results: ReadonlyMap<string, string>, answered: Set<string>): ChatModelFunctionCall {
  const parsed = ToolCall.safeParse(call);
  if (!parsed.success) throw new Error("an assistant tool call is not an OpenAI function call");
  const { id, function: fn } = parsed.data;
  answered.add(id);
  return { type: "functionCall", name: fn.name, params: parseArguments(fn.arguments), result: results.get(id) ?? "" };
}

function parseArguments(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text; // the model wrote arguments that are not JSON: render them as they were
  }
}
