// The playground: streams a chat completion with its reasoning shown apart from the answer.
import { askForKey, authHeaders, readEvents } from "./api.js";
import { $, h } from "./dom.js";
import { formatDuration, formatRate } from "./format.js";

/** Offers the models the cluster serves now, keeping the one chosen. */
export function showModels(models) {
  const select = $("model");
  const ids = models.map((m) => m.id);
  const current = [...select.options].map((o) => o.value);
  if (ids.join("\n") === current.join("\n")) return;
  const chosen = select.value;
  select.replaceChildren(...ids.map((id) => h("option", { value: id }, id)));
  if (ids.includes(chosen)) select.value = chosen;
  select.disabled = ids.length === 0;
  updateSendState();
}

let chat; // { controller } while a reply streams

function updateSendState() {
  $("send").disabled = Boolean(chat) || $("model").disabled || $("model").value === "";
}

async function sendChat(event) {
  event.preventDefault();
  const prompt = $("prompt").value.trim();
  const model = $("model").value;
  if (!prompt || !model || chat) return;
  const controller = new AbortController();
  chat = { controller };
  const reasoningBox = $("reasoning-box");
  const reasoning = $("reasoning");
  const answer = $("answer");
  reasoningBox.hidden = true;
  reasoning.textContent = "";
  answer.hidden = false;
  answer.textContent = "";
  answer.className = "answer streaming";
  $("stop").hidden = false;
  updateSendState();
  const started = performance.now();
  let firstAt;
  let pieces = 0;
  let usage;
  const showStats = () => {
    const tokens = usage?.completion_tokens ?? pieces;
    const parts = [`${tokens} tokens`];
    if (firstAt !== undefined) {
      parts.push(`first token ${formatDuration(firstAt - started)}`);
      const seconds = (performance.now() - firstAt) / 1_000;
      if (seconds > 0.2) parts.push(`${formatRate(tokens / seconds)} tok/s`);
    }
    $("chat-stats").textContent = parts.join(" · ");
  };
  try {
    for (;;) {
      const response = await fetch("/v1/chat/completions", {
        method: "POST",
        headers: { "Content-Type": "application/json", ...authHeaders() },
        body: JSON.stringify({
          model,
          messages: [{ role: "user", content: prompt }],
          stream: true,
          stream_options: { include_usage: true },
          reasoning_format: "separate",
        }),
        signal: controller.signal,
      });
      if (response.status === 401) {
        await askForKey();
        continue;
      }
      if (!response.ok || !response.body) {
        const body = await response.json().catch(() => null);
        throw new Error(body?.error?.message ?? `The coordinator answered ${response.status}.`);
      }
      await readEvents(response, (data) => {
        if (data === "[DONE]") return;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        if (chunk.usage) usage = chunk.usage;
        const delta = chunk.choices?.[0]?.delta ?? {};
        if (delta.reasoning_content) {
          firstAt ??= performance.now();
          pieces += 1;
          reasoningBox.hidden = false;
          reasoning.append(delta.reasoning_content);
        }
        if (delta.content) {
          firstAt ??= performance.now();
          pieces += 1;
          answer.append(delta.content);
        }
        showStats();
      });
      break;
    }
    showStats();
  } catch (error) {
    if (!controller.signal.aborted) {
      answer.classList.add("error");
      answer.textContent = error instanceof Error ? error.message : String(error);
    }
  } finally {
    answer.classList.remove("streaming");
    if (controller.signal.aborted && !answer.textContent) answer.textContent = "(stopped)";
    chat = undefined;
    $("stop").hidden = true;
    updateSendState();
  }
}

export function setUpPlayground() {
  $("chat").addEventListener("submit", sendChat);
  $("stop").addEventListener("click", () => chat?.controller.abort());
  $("model").addEventListener("change", updateSendState);
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("chat").requestSubmit();
    }
  });
  updateSendState();
}
