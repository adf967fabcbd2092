// The dashboard in a real browser (Debian's chromium through playwright-core): worker cards, a streamed chat with
// its reasoning apart, a worker leaving, a coordinator restart; and a screenshot for people to look at.
import { mkdirSync } from "node:fs";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import { ARTIFACTS, openBrowser, type TestBrowser } from "./support/browser.js";
import { startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";

describe("dashboard in a real browser", () => {
  let coordinator: RunningCoordinator | undefined;
  const workers: TestWorker[] = [];
  let browser: TestBrowser | undefined;
  let page: Page;

  beforeAll(async () => {
    browser = await openBrowser();
    page = browser.page;
  });

  afterAll(async () => {
    await browser?.close();
    for (const worker of workers) await worker.stop();
    await coordinator?.close();
    expect(browser?.pageErrors).toEqual([]);
  });

  it("shows the workers, streams a chat with its reasoning apart, drops a worker that leaves, and survives a restart", async () => {
    // Given a coordinator with two simulator workers, one serving the playground's model, the other a slow model
    // kept busy by background streams (two running, one queued), so the page has something live to show,
    coordinator = await startTestCoordinator();
    const port = coordinator.port;
    workers.push(await startSimWorker(coordinator, { name: "gpu-box-a", maxConcurrency: 4, tokensPerSecond: 60, promptCacheTokens: 100_000 }));
    workers.push(
      await startSimWorker(coordinator, { name: "mac-studio-b", models: ["qwen3-8b"], maxConcurrency: 2, tokensPerSecond: 40, replyTokens: 2_000 }),
    );
    const background = new AbortController();
    const slowStreams = [1, 2, 3].map((n) =>
      fetch(`${coordinator!.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "qwen3-8b", messages: [{ role: "user", content: `background ${n}` }], stream: true }),
        signal: background.signal,
      }).then((r) => r.text()).catch(() => ""),
    );

    // when the dashboard opens, it shows both worker cards and goes live;
    await page.goto(`${coordinator.url}/`);
    const card = (name: string) => page.locator(`.worker-card[data-worker-name="${name}"]`);
    await card("gpu-box-a").waitFor();
    await card("mac-studio-b").waitFor();
    await page.locator('#connection[data-state="live"]').waitFor();
    expect(await card("gpu-box-a").textContent()).toContain("simulator");
    // (a lone head without --nats has no heads to show)
    expect(await page.locator("#heads-panel").isHidden()).toBe(true);

    // a chat from the playground streams its answer, with the reasoning shown apart from it;
    await page.locator("#model").selectOption("simulator");
    await page.locator("#prompt").fill("Hello cluster, how are you today?");
    await page.locator("#send").click();
    await page.locator("#answer").getByText("I am the coordinator's simulated model").waitFor();
    await page.locator("#answer:not(.streaming)").waitFor();
    const answer = (await page.locator("#answer").textContent()) ?? "";
    const reasoning = (await page.locator("#reasoning").textContent()) ?? "";
    expect(reasoning).toContain("The user wrote 6 words");
    expect(answer).toContain('you said "Hello cluster, how are you today?"');
    expect(answer).not.toContain("The user wrote");
    expect(answer).not.toContain("<think>");
    expect(await page.locator("#reasoning-box").isVisible()).toBe(true);

    // the conversation's next turn reads its start from gpu-box-a's prompt cache, and its card says so;
    const nextTurn = await fetch(`${coordinator.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "simulator",
        messages: [
          { role: "user", content: "Hello cluster, how are you today?" },
          { role: "assistant", content: answer },
          { role: "user", content: "And tomorrow?" },
        ],
      }),
    });
    const reused = ((await nextTurn.json()) as { usage: { prompt_tokens_details?: { cached_tokens?: number } } }).usage.prompt_tokens_details?.cached_tokens;
    expect(reused).toBeGreaterThan(0);
    await expect.poll(async () => (await card("gpu-box-a").textContent()) ?? "").toMatch(/cache [\d,.]+[kM]? tokens, [1-9]\d*% of prompt tokens reused/);

    // the finished request shows in the request list beside the live ones and the queue; the screenshot is taken
    // with everything on it;
    await page.locator("#requests tr.ended .badge.finished").first().waitFor();
    await expect.poll(() => page.locator("#requests tr.live .badge.streaming").count()).toBe(2);
    await page.locator('.queue-row[data-model="qwen3-8b"]').getByText("1 queued").waitFor();
    await expect.poll(() => page.locator('.worker-card[data-worker-name="mac-studio-b"] .slot.busy').count()).toBe(2);
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: new URL("dashboard.png", ARTIFACTS).pathname, fullPage: true });
    await page.emulateMedia({ colorScheme: "dark" });
    await page.screenshot({ path: new URL("dashboard-dark.png", ARTIFACTS).pathname, fullPage: true });
    await page.emulateMedia({ colorScheme: "light" });

    // a worker that stops disappears from the page (its streams end with an error, the queued one with it);
    await workers.pop()!.stop();
    await card("mac-studio-b").waitFor({ state: "detached" });
    expect(await page.locator(".worker-card").count()).toBe(1);
    background.abort();
    await Promise.all(slowStreams);

    // and when the coordinator restarts, the page says it is reconnecting, then comes back by itself.
    await coordinator.close();
    await page.locator('#connection[data-state="reconnecting"]').waitFor();
    coordinator = await startTestCoordinator({ port });
    workers.length = 0;
    workers.push(await startSimWorker(coordinator, { name: "after-restart" }));
    await card("after-restart").waitFor({ timeout: 15_000 });
    await page.locator('#connection[data-state="live"]').waitFor();
    expect(await page.locator(".worker-card").count()).toBe(1);
  });

  it("asks for the API key once when the coordinator requires one, and keeps it", async () => {
    // Given a coordinator that requires an API key, and a page that has none stored,
    for (const worker of workers.splice(0)) await worker.stop();
    await coordinator?.close();
    coordinator = await startTestCoordinator({ apiKey: ["sk-dashboard-key-123456"] });
    workers.push(await startSimWorker(coordinator, { name: "keyed-worker" }));
    await page.goto(`${coordinator.url}/`);
    // (a string: the test is compiled without DOM types)
    await page.evaluate("localStorage.clear()");
    await page.reload();

    // when the feed is refused, the page asks for the key; given it, the page goes live;
    await page.locator("#key-dialog[open]").waitFor();
    await page.locator('#connection[data-state="key"]').waitFor();
    await page.locator("#key-input").fill("sk-dashboard-key-123456");
    await page.locator("#key-form button[type=submit]").click();
    await page.locator('.worker-card[data-worker-name="keyed-worker"]').waitFor();
    await page.locator('#connection[data-state="live"]').waitFor();

    // the playground sends it too;
    await page.locator("#prompt").fill("Hi with a key");
    await page.locator("#send").click();
    await page.locator("#answer").getByText("I am the coordinator's simulated model").waitFor();

    // and after a reload the stored key is used without asking again.
    await page.reload();
    await page.locator('.worker-card[data-worker-name="keyed-worker"]').waitFor();
    expect(await page.locator("#key-dialog[open]").count()).toBe(0);
    expect(await page.evaluate(`localStorage.getItem("coordinator.apiKey")`)).toBe("sk-dashboard-key-123456");
  });
});
