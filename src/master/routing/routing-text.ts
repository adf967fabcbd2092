// The text routing compares prompts by: the conversation in a canonical form whose earlier turns are a prefix of
// their later turns', as a chat template renders them (what a worker's KV cache holds), without rendering anything.
import type { TaskRequest } from "../task.js";

/** Ends each message: a character no chat text holds, so one message's end never matches another's middle. */
const END = "\u0000";

/**
 * `request` as routing sees it: tools first (templates put them at the top), then each message's role and content.
 * Empty for an embedding task (it leaves nothing in a cache to reuse).
 */
export function routingText(request: TaskRequest): string {
  if (request.embed) return "";
  if (request.prompt !== undefined) return request.prompt;
  let text = request.tools && request.tools.length > 0 ? `${JSON.stringify(request.tools)}${END}` : "";
  for (const message of request.messages) text += `${message.role}${END}${message.content}${END}`;
  return text;
}
