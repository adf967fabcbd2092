// The grammar a task's output must follow: JSON for response_format, a tool call in the model's markup for a forced
// tool_choice; llama.cpp masks every token that would leave it, so the output follows it whatever the model prefers.
import { z } from "zod";
import type { GbnfJsonSchema, Llama, LlamaGrammar } from "node-llama-cpp";
import type { ResponseFormat } from "../../../worker-protocol/index.js";
import { EngineRequestError, type GenerationRequest } from "../engine.js";
import { toGrammarSchema } from "./json-schema.js";

/** Output formats (see chat-template.ts detectFormat) whose tool calls a grammar can force, and how a call is written. */
const TOOL_CALL_MARKUP: Record<string, { before: string; after: string; argumentsKey: string; between?: string }> = {
  // Hermes: `<tool_call>{"name": …, "arguments": {…}}</tool_call>`, parallel calls one after another.
  think: { before: "<tool_call>\n", after: "\n</tool_call>", argumentsKey: "arguments", between: "\n" },
  // Llama 3.1+: the whole reply is `{"name": …, "parameters": {…}}` (one call: the grammar writes no parallel ones).
  llama3: { before: "", after: "", argumentsKey: "parameters" },
};

/** Whether a forced tool call can be written in this output format. */
export function canForceToolCall(format: string | undefined): boolean {
  return format !== undefined && format in TOOL_CALL_MARKUP;
}

/** Whether JSON output can be forced in this output format (harmony's channel markup must come before any content). */
export function canForceJson(format: string | undefined): boolean {
  return format !== "harmony";
}

const ToolChoice = z.union([
  z.enum(["none", "auto", "required"]),
  z.object({ type: z.literal("function"), function: z.object({ name: z.string() }) }),
]);
const FunctionTool = z.object({
  type: z.literal("function"),
  function: z.object({ name: z.string(), parameters: z.record(z.string(), z.unknown()).optional() }),
});

/** The prompt's situation the grammar starts from. */
export interface GrammarContext {
  format: string | undefined;
  /** The chat template already opened a reasoning block (`<think>`): the grammar lets the model close it first. */
  reasoningOpened: boolean;
}

/**
 * The grammar the request's output must follow, or undefined (at once, without awaiting anything) when it asks for
 * none. Throws an EngineRequestError for what cannot be enforced.
 */
export function outputGrammar(llama: Llama, request: GenerationRequest, context: GrammarContext): Promise<LlamaGrammar> | undefined {
  const forced = forcedFunctions(request);
  // A named function is called once; "required" allows parallel calls unless the request turned them off.
  const parallel = request.toolChoice === "required" && request.parallelToolCalls !== false;
  if (forced) return toolCallGrammar(llama, forced, parallel, context);
  const format = request.responseFormat;
  if (!format) return undefined;
  if (!canForceJson(context.format)) {
    throw new EngineRequestError(`response_format ${format.type} cannot be enforced for the ${context.format} output format`, "invalid_request");
  }
  return jsonGrammar(llama, format, context);
}

async function jsonGrammar(llama: Llama, format: ResponseFormat, context: GrammarContext): Promise<LlamaGrammar> {
  const payload =
    format.type === "json_object"
      ? (await llama.getGrammarFor("json")).grammar
      : await schemaGrammar(llama, toGrammarSchema(format.schema, "response_format.json_schema.schema"));
  return await compose(llama, payload, (json) => `${reasoning(context)} ${json}`);
}

/** The functions a call is forced among, when tool_choice is "required" or names one. */
function forcedFunctions(request: GenerationRequest): Array<z.infer<typeof FunctionTool>["function"]> | undefined {
  if (request.toolChoice === undefined) return undefined;
  const choice = ToolChoice.safeParse(request.toolChoice);
  if (!choice.success) throw new EngineRequestError("tool_choice is not one of none, auto, required or a function", "invalid_request");
  if (choice.data === "none" || choice.data === "auto") return undefined;
  const functions = (request.tools ?? []).flatMap((tool) => {
    const parsed = FunctionTool.safeParse(tool);
    return parsed.success ? [parsed.data.function] : [];
  });
  const wanted = typeof choice.data === "object" ? choice.data.function.name : undefined;
  const chosen = wanted === undefined ? functions : functions.filter((fn) => fn.name === wanted);
  if (chosen.length === 0) {
    throw new EngineRequestError(wanted === undefined ? "tool_choice is required, but there are no tools" : `tool_choice names '${wanted}', which is not among the tools`, "invalid_request");
  }
  return chosen;
}

async function toolCallGrammar(
  llama: Llama,
  functions: Array<z.infer<typeof FunctionTool>["function"]>,
  parallel: boolean,
  context: GrammarContext,
): Promise<LlamaGrammar> {
  const markup = context.format === undefined ? undefined : TOOL_CALL_MARKUP[context.format];
  if (!markup) throw new EngineRequestError(`a tool call cannot be forced in the ${context.format ?? "unknown"} output format`, "invalid_request");
  const calls = functions.map((fn) => ({
    type: "object",
    properties: {
      name: { const: fn.name },
      [markup.argumentsKey]: toGrammarSchema(fn.parameters ?? { type: "object" }, `the parameters of the tool '${fn.name}'`),
    },
  }));
  const schema = (calls.length === 1 ? calls[0] : { oneOf: calls }) as GbnfJsonSchema;
  const payload = await schemaGrammar(llama, schema);
  return await compose(llama, payload, (json) => {
    const call = `(${literal(markup.before)} ${json} ${literal(markup.after)})`;
    const more = parallel && markup.between !== undefined ? ` (${literal(markup.between)} ${call})*` : "";
    return `${reasoning(context)} ${call}${more}`;
  });
}

/** The GBNF text node-llama-cpp writes for a JSON schema; a schema it cannot compile is the client's to fix. */
async function schemaGrammar(llama: Llama, schema: GbnfJsonSchema): Promise<string> {
  try {
    return (await llama.createGrammarForJsonSchema<GbnfJsonSchema>(schema)).grammar;
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new EngineRequestError(`the JSON schema cannot be turned into a grammar: ${reason}`, "invalid_request");
  }
}

/** GBNF before the payload for the reasoning the model may write first (only the think format has it in plain text). */
function reasoning(context: GrammarContext): string {
  if (context.format !== "think") return "";
  // The reasoning may hold no `<`: GBNF has no "anything but </think>", and this keeps the rule simple.
  const body = `[^<]* "</think>" [\\n ]{0,2} `;
  return context.reasoningOpened ? body : `("<think>" ${body})? `;
}

const PAYLOAD_RULE = "llama-engine-payload";

/**
 * One grammar from node-llama-cpp's JSON grammar `payload`: its root rule renamed, and a new root that `wrap` writes
 * around a reference to it.
 */
async function compose(llama: Llama, payload: string, wrap: (json: string) => string): Promise<LlamaGrammar> {
  if (!/^root\s*::=/m.test(payload) || payload.includes(PAYLOAD_RULE)) throw new Error("unexpected grammar from node-llama-cpp");
  const rules = withoutTrailingNewlines(payload).replace(/^root(\s*)::=/m, `${PAYLOAD_RULE}$1::=`);
  return await llama.createGrammar({ grammar: `root ::= ${wrap(PAYLOAD_RULE)}\n${rules}` });
}

/**
 * node-llama-cpp ends a JSON-schema grammar with four newlines (its chat session stops on them); here the grammar
 * ends with the JSON itself, so the model's end-of-generation token ends the reply.
 */
function withoutTrailingNewlines(grammar: string): string {
  return grammar.replace(/^(root\s*::=.*?) "(?:\\n){4}" \[\\n\]\*$/m, "$1");
}

/** A GBNF string literal. */
function literal(text: string): string {
  return text === "" ? "" : JSON.stringify(text);
}
