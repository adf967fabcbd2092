// What a task needs of its model (capabilities), and the clear 400 when the model's workers cannot do it: an option
// is honoured end to end or refused before queueing, never dropped on the way.
import type { TaskRequest } from "../master/task.js";
import { CAPABILITIES } from "../worker-protocol/index.js";
import { InvalidRequestError } from "./errors.js";

export interface Requirement {
  capability: string;
  /** The request field that needs it, in chat completions' words (a dialect may rename it). */
  param: string;
  /** What the field asks for, for the error message. */
  what: string;
}

const SAMPLING_PARAMS = [
  ["topK", "top_k"],
  ["minP", "min_p"],
  ["repetitionPenalty", "repetition_penalty"],
  ["frequencyPenalty", "frequency_penalty"],
  ["presencePenalty", "presence_penalty"],
] as const;

/** Every capability `task` needs, with the field that needs it. */
export function requirementsOf(task: TaskRequest): Requirement[] {
  const needs: Requirement[] = [];
  if (task.embed !== undefined) {
    needs.push({ capability: CAPABILITIES.embeddings, param: "model", what: "embeddings" });
    if (task.embed.dimensions !== undefined) {
      needs.push({ capability: CAPABILITIES.embeddingDimensions, param: "dimensions", what: "shortened embeddings (dimensions)" });
    }
    return needs;
  }
  needs.push({ capability: CAPABILITIES.chat, param: "model", what: "text generation (it only computes embeddings)" });
  if (task.prompt !== undefined) needs.push({ capability: CAPABILITIES.rawPrompt, param: "prompt", what: "raw completions (a prompt without the chat template)" });
  if (task.tools !== undefined && task.tools.length > 0) needs.push({ capability: CAPABILITIES.tools, param: "tools", what: "tools" });
  const choice = task.toolChoice;
  if (choice === "required" || (typeof choice === "object" && choice !== null)) {
    needs.push({ capability: CAPABILITIES.toolChoiceRequired, param: "tool_choice", what: "a forced tool call" });
  }
  for (const [field, param] of SAMPLING_PARAMS) {
    if (task.params[field] !== undefined) needs.push({ capability: CAPABILITIES.sampling, param, what: param });
  }
  if (task.params.logitBias !== undefined) needs.push({ capability: CAPABILITIES.logitBias, param: "logit_bias", what: "logit_bias" });
  if (task.responseFormat?.type === "json_object") {
    needs.push({ capability: CAPABILITIES.jsonObject, param: "response_format", what: "JSON mode (response_format json_object)" });
  } else if (task.responseFormat?.type === "json_schema") {
    needs.push({ capability: CAPABILITIES.jsonSchema, param: "response_format", what: "structured output (response_format json_schema)" });
  }
  if (task.logprobs !== undefined) needs.push({ capability: CAPABILITIES.logprobs, param: "logprobs", what: "logprobs" });
  const withImage = task.messages.findIndex((m) => m.parts?.some((part) => part.type === "image_url"));
  if (withImage >= 0) needs.push({ capability: CAPABILITIES.vision, param: "messages", what: `images (in messages[${withImage}] as the model sees them)` });
  return needs;
}

/**
 * Refuses `task` when `capabilities` (what every worker serving its model can do) lack one it needs. `paramNames`
 * renames chat completions' field names into the dialect's. Unknown capabilities (no worker serves the model yet)
 * are not judged here: the task waits for a worker, and the first one to come decides nothing more.
 */
export function checkCapabilities(
  task: TaskRequest,
  capabilities: readonly string[] | undefined,
  paramNames: Readonly<Record<string, string>> = {},
): void {
  if (capabilities === undefined) return;
  for (const need of requirementsOf(task)) {
    if (capabilities.includes(need.capability)) continue;
    const param = paramNames[need.param] ?? need.param;
    const remedy = param === "model" ? "Use a model" : `Remove '${param}', or use a model`;
    throw new InvalidRequestError(
      `The model '${task.model}' does not support ${need.what}: its workers do not announce the '${need.capability}' capability. ` +
        `${remedy} whose workers do (see GET /v1/models).`,
      param,
      "unsupported_parameter",
    );
  }
}
