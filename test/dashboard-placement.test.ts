// Placement on the dashboard, in a real browser: a library worker's card shows its memory bar, its models and its
// library; Load, Unplace and Unload act through the admin routes; a refused action says why on the card.
import { mkdirSync } from "node:fs";
import type { Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import { ARTIFACTS, openBrowser, type TestBrowser } from "./support/browser.js";
import { openaiClient, startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";

const GiB = 2 ** 30;
const CLIENT_KEY = "sk-client-key-0123456789";
const ADMIN_KEY = "sk-admin-key-0123456789";

/** Two models of 6 GiB and memory for one: alpha loads slowly enough to be seen loading. */
const library = [
  { id: "alpha", sizeBytes: 6 * GiB, loadMs: 1_200 },
  { id: "beta", sizeBytes: 6 * GiB, loadMs: 0 },
];

interface PlacementList {
  data: Array<{ id: string; model: string; instances: Array<{ worker: { name: string }; state: string }> }>;
}

describe("placement on the dashboard", () => {
  let coordinator: RunningCoordinator | undefined;
  let worker: TestWorker | undefined;
  let browser: TestBrowser | undefined;
  let page: Page;

  beforeAll(async () => {
    browser = await openBrowser();
    page = browser.page;
  });

  afterEach(async () => {
    await worker?.stop();
    await coordinator?.close();
    worker = undefined;
    coordinator = undefined;
  });

  afterAll(async () => {
    await browser?.close();
    expect(browser?.pageErrors).toEqual([]);
  });

  const card = () => page.locator('.worker-card[data-worker-name="shelf"]');
  const chip = (model: string) => card().locator(`.placed[data-model="${model}"]`);
  const libraryItem = (model: string) => card().locator(`.library-item[data-model="${model}"]`);
  const memoryUsed = (bytes: number) => card().locator(`.memory[data-used-bytes="${bytes}"][data-total-bytes="${8 * GiB}"]`);

  async function placements(headers: Record<string, string> = {}): Promise<PlacementList["data"]> {
    const response = await fetch(`${coordinator?.url}/v1/placements`, { headers });
    return ((await response.json()) as PlacementList).data;
  }

  it("loads a model from the library, unplaces it, and unloads one loaded on demand, the memory bar following", async () => {
    // Given a worker with a library of two models and memory for one, and the dashboard open on it,
    coordinator = await startTestCoordinator({ feedIntervalMs: 100 });
    worker = await startSimWorker(coordinator, { name: "shelf", library, memoryBytes: 8 * GiB, tokensPerSecond: 0 });
    await page.goto(`${coordinator.url}/`);
    await memoryUsed(0).waitFor();
    expect(await card().locator(".memory").textContent()).toContain("0 GB of 8.0 GB used");
    await libraryItem("alpha").waitFor();
    await libraryItem("beta").waitFor();
    expect(await card().locator(".placed").count()).toBe(0);

    // when Load is clicked on alpha, it shows loading with its progress, then loaded and pinned, and the memory bar
    // holds it; a placement exists for it on that worker;
    await libraryItem("alpha").getByRole("button", { name: "Load" }).click();
    await chip("alpha").and(page.locator('[data-state="loading"]')).waitFor();
    expect(await chip("alpha").locator(".badge").textContent()).toMatch(/^loading \d+%$/);
    await chip("alpha").and(page.locator('[data-state="loaded"]')).waitFor();
    await memoryUsed(6 * GiB).waitFor();
    expect(await card().locator(".memory").textContent()).toContain("6.0 GB of 8.0 GB used");
    await libraryItem("alpha").waitFor({ state: "detached" });
    const [placement, ...others] = await placements();
    expect(others).toEqual([]);
    expect(placement).toMatchObject({ model: "alpha", instances: [{ worker: { name: "shelf" }, state: "loaded" }] });
    expect(await chip("alpha").getAttribute("data-pinned")).toBe(placement?.id);
    mkdirSync(ARTIFACTS, { recursive: true });
    await card().screenshot({ path: new URL("dashboard-placement.png", ARTIFACTS).pathname });

    // its Unplace button is the same element view after view (a click in progress is not lost to a redraw);
    const unplace = chip("alpha").getByRole("button", { name: "Unplace" });
    await unplace.evaluate((button) => button.setAttribute("data-mark", "kept"));
    const footer = card().locator(".hint").last();
    const before = await footer.textContent();
    await expect.poll(() => footer.textContent()).not.toBe(before);
    expect(await unplace.getAttribute("data-mark")).toBe("kept");

    // Unplace ends the placement: alpha goes back to the library and the memory is free again;
    await unplace.click();
    await chip("alpha").waitFor({ state: "detached" });
    await libraryItem("alpha").waitFor();
    await memoryUsed(0).waitFor();
    expect(await placements()).toEqual([]);

    // a request for beta loads it on demand: loaded, not pinned, with Unload;
    const reply = await openaiClient(coordinator).chat.completions.create({ model: "beta", messages: [{ role: "user", content: "hi" }] });
    expect(reply.model).toBe("beta");
    await chip("beta").and(page.locator('[data-state="loaded"]:not([data-pinned])')).waitFor();
    await memoryUsed(6 * GiB).waitFor();

    // and Unload takes it off: the memory bar is back to nothing used, and no failure was shown.
    await chip("beta").getByRole("button", { name: "Unload" }).click();
    await chip("beta").waitFor({ state: "detached" });
    await memoryUsed(0).waitFor();
    await libraryItem("beta").waitFor();
    expect(await card().locator(".placement-failure").isVisible()).toBe(false);
    expect(worker.engine.library?.memory().freeBytes).toBe(8 * GiB);
  });

  it("shows on the card why a client key may not load a model, without asking for a key", async () => {
    // Given a coordinator with client and admin keys, and a dashboard holding a client key,
    coordinator = await startTestCoordinator({ apiKey: [CLIENT_KEY], adminKey: [ADMIN_KEY], feedIntervalMs: 100 });
    worker = await startSimWorker(coordinator, { name: "shelf", library, memoryBytes: 8 * GiB });
    await page.goto(`${coordinator.url}/`);
    await page.evaluate(`localStorage.setItem("coordinator.apiKey", ${JSON.stringify(CLIENT_KEY)})`);
    await page.reload();
    await libraryItem("alpha").waitFor();

    // when Load is clicked,
    await libraryItem("alpha").getByRole("button", { name: "Load" }).click();

    // then the card says an admin key is needed, the button is back, no key is asked for and nothing was placed;
    const failure = card().locator(".placement-failure");
    await failure.waitFor();
    expect(await failure.textContent()).toContain("needs an admin key");
    await libraryItem("alpha").getByRole("button", { name: "Load" }).and(page.locator(":enabled")).waitFor();
    expect(await page.locator("#key-dialog[open]").count()).toBe(0);
    expect(await placements({ Authorization: `Bearer ${ADMIN_KEY}` })).toEqual([]);

    // and the message stays on the card through later views.
    const footer = card().locator(".hint").last();
    const before = await footer.textContent();
    await expect.poll(() => footer.textContent()).not.toBe(before);
    expect(await failure.isVisible()).toBe(true);
  });
});
