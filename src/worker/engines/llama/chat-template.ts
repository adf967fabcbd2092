// The model's own chat template: renders a task's chat into prompt tokens, and names the markup family it uses.
import type { ChatWrapper, GgufFileInfo, LlamaModel, LlamaText, Token } from "node-llama-cpp";
import type { GenerationRequest } from "../engine.js";
import type { NodeLlamaCpp } from "./backend.js";
import { toChatHistory, toFunctions } from "./chat-history.js";
import { DETOKENIZE_CONTEXT_TOKENS } from "./token-text.js";

export interface RenderedPrompt {
  tokens: Token[];
  /** Text the chat template already opened the reply with (e.g. `<think>\n`), to stream ahead of the model's own. */
  openedWith: string;
  /** Plain-text stop triggers of the chat wrapper (end-of-generation tokens stop decoding by themselves). */
  stops: string[];
}

/** Renders the request's messages and tools with the model's chat wrapper, ready for the model to write its reply. */
export function renderPrompt(lib: NodeLlamaCpp, model: LlamaModel, chatWrapper: ChatWrapper, request: GenerationRequest): RenderedPrompt {
  // A raw completion: the text as given (after the beginning-of-sequence token, when the model wants one), no
  // template, no template stops.
  if (request.prompt !== undefined) {
    const bos = model.tokens.shouldPrependBosToken ? model.tokens.bos : null;
    return { tokens: [...(bos === null ? [] : [bos]), ...model.tokenize(request.prompt, false)], openedWith: "", stops: [] };
  }
  const chatHistory = [...toChatHistory(request.messages), { type: "model" as const, response: [] }];
  // tool_choice "none": the model is not shown the tools, so it cannot call them (as vLLM does by default).
  const availableFunctions = toFunctions(request.toolChoice === "none" ? [] : (request.tools ?? []));
  const state = chatWrapper.generateContextState({ chatHistory, availableFunctions, documentFunctionParams: true });
  const tokens = state.contextText.tokenize(model.tokenizer);
  const tail = model.detokenize(tokens.slice(-DETOKENIZE_CONTEXT_TOKENS), true);
  const openedWith = /(?:<think>|<seed:think>|\[THINK\])\s*$/.exec(tail)?.[0] ?? "";
  const stops = state.stopGenerationTriggers.flatMap((trigger) => plainText(lib, trigger));
  return { tokens, openedWith, stops };
}

/**
 * The reasoning/tool-call markup family, as the master's parser registry names it, from the chat template in the
 * file's metadata (so it is known before the model is loaded).
 */
export function detectFormat(fileInfo: GgufFileInfo): string | undefined {
  const template = fileInfo.metadata.tokenizer?.chat_template ?? "";
  const architecture = String(fileInfo.metadata.general.architecture);
  if (architecture === "gpt-oss" || template.includes("<|channel|>")) return "harmony";
  if (template.includes("[THINK]") || template.includes("[TOOL_CALLS]")) return "mistral";
  if (template.includes("<seed:think>")) return "seed";
  // The engine streams a `<think>` the template prefills itself (see renderPrompt), so never "think-prefilled".
  if (template.includes("<think>") || template.includes("</think>") || template.includes("<tool_call>")) return "think";
  if (template.includes("<|python_tag|>")) return "llama3";
  return undefined; // the master auto-detects
}

/** A stop trigger as text, or nothing when it involves a built-in special token (EOS/EOT stop decoding anyway). */
function plainText(lib: NodeLlamaCpp, trigger: LlamaText): string[] {
  let text = "";
  for (const value of trigger.values) {
    if (typeof value === "string") text += value;
    else if (value instanceof lib.SpecialTokensText) text += value.value;
    else return [];
  }
  return text === "" ? [] : [text];
}
