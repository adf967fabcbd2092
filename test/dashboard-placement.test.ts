// Placement on the dashboard, in a real browser: a library worker's card shows its memory bar, its models and its
// library; Load, Unplace and Unload act through the admin routes; a refused action says why on the card (a client
// key's refusal once the admin key asked for is not given); a worker with a models dir pulls a model from its card,
// its progress shown there.
import { mkdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import { buildScriptedModel } from "../src/worker/engines/gguf/scripted-model.js";
import { ARTIFACTS, openBrowser, type TestBrowser } from "./support/browser.js";
import { openaiClient, startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";
import { type FileServer, startFileServer } from "./support/file-server.js";

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
  let server: FileServer | undefined;
  let dir: string | undefined;
  let browser: TestBrowser | undefined;
  let page: Page;

  beforeAll(async () => {
    browser = await openBrowser();
    page = browser.page;
  });

  afterEach(async () => {
    await worker?.stop();
    await coordinator?.close();
    await server?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
    worker = undefined;
    coordinator = undefined;
    server = undefined;
    dir = undefined;
  });

  afterAll(async () => {
    await browser?.close();
    expect(browser?.pageErrors).toEqual([]);
  });

  const card = () => page.locator('.worker-card[data-worker-name="shelf"]');
  const chip = (model: string) => card().locator(`.placed[data-model="${model}"]`);
  const libraryItem = (model: string) => card().locator(`.library-item[data-model="${model}"]`);
  const pullItem = (state: string) => card().locator(`.pull-item[data-state="${state}"]`);
  const memoryUsed = (bytes: number) => card().locator(`.memory[data-used-bytes="${bytes}"][data-total-bytes="${8 * GiB}"]`);

  /** The page asks for an admin key (an admin route refused the client key): Cancel, giving none. */
  async function dismissAdminKeyDialog(): Promise<void> {
    await page.locator("#key-dialog[open]").waitFor();
    expect(await page.locator("#key-title").textContent()).toBe("Admin key required");
    await page.locator("#key-cancel").click();
    await page.locator("#key-dialog[open]").waitFor({ state: "detached" });
  }

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

  it("shows on the card why a client key may not load a model when the admin key asked for is not given", async () => {
    // Given a coordinator with client and admin keys, and a dashboard holding a client key,
    coordinator = await startTestCoordinator({ apiKey: [CLIENT_KEY], adminKey: [ADMIN_KEY], feedIntervalMs: 100 });
    worker = await startSimWorker(coordinator, { name: "shelf", library, memoryBytes: 8 * GiB });
    await page.goto(`${coordinator.url}/`);
    await page.evaluate(`localStorage.setItem("coordinator.apiKey", ${JSON.stringify(CLIENT_KEY)})`);
    await page.reload();
    await libraryItem("alpha").waitFor();

    // when Load is clicked and the admin key it asks for is not given (Cancel),
    await libraryItem("alpha").getByRole("button", { name: "Load" }).click();
    await dismissAdminKeyDialog();

    // then the card says an admin key is needed, the button is back, the client key is kept and nothing was placed;
    const failure = card().locator(".placement-failure");
    await failure.waitFor();
    expect(await failure.textContent()).toContain("needs an admin key");
    await libraryItem("alpha").getByRole("button", { name: "Load" }).and(page.locator(":enabled")).waitFor();
    expect(await page.evaluate(`localStorage.getItem("coordinator.apiKey")`)).toBe(CLIENT_KEY);
    expect(await placements({ Authorization: `Bearer ${ADMIN_KEY}` })).toEqual([]);

    // and the message stays on the card through later views.
    const footer = card().locator(".hint").last();
    const before = await footer.textContent();
    await expect.poll(() => footer.textContent()).not.toBe(before);
    expect(await failure.isVisible()).toBe(true);
  });

  it("pulls a model from the card: typed text survives redraws, a client key is refused, progress shows, then the model is in the library; a bad checksum shows its error", async () => {
    // Given a test model (8 MB) served by a file server that stalls a third of the way, a worker with an empty
    // library and a models dir, keys, and a dashboard holding a client key,
    const bytes = Buffer.from(buildScriptedModel({ layers: 4, width: 256 }).bytes);
    server = await startFileServer(bytes);
    server.stallAfter = Math.floor(bytes.length / 3);
    dir = await mkdtemp(path.join(tmpdir(), "dashboard-pull-"));
    coordinator = await startTestCoordinator({ apiKey: [CLIENT_KEY], adminKey: [ADMIN_KEY], feedIntervalMs: 100 });
    worker = await startSimWorker(coordinator, { name: "shelf", library: [], memoryBytes: 8 * GiB, modelsDir: dir, libraryScanMs: 60_000 });
    await page.goto(`${coordinator.url}/`);
    await page.evaluate(`localStorage.setItem("coordinator.apiKey", ${JSON.stringify(CLIENT_KEY)})`);
    await page.reload();
    const url = card().locator(".pull-url");
    const sha256 = card().locator(".pull-sha");
    const pull = card().locator(".pull-form").getByRole("button", { name: "Pull" });
    await url.waitFor();
    expect(await card().locator(".library-head").first().textContent()).toBe("Library · empty");

    // when a URL is typed into the card's form while views keep arriving (ten a second), the text is all there and
    // the box keeps the focus, through later views too;
    const modelUrl = `${server.origin}/org/test/resolve/main/pulled.gguf`;
    await url.click();
    await url.pressSequentially(modelUrl, { delay: 15 });
    const footer = card().locator(".hint").last();
    const before = await footer.textContent();
    await expect.poll(() => footer.textContent()).not.toBe(before);
    expect(await url.inputValue()).toBe(modelUrl);
    expect(await card().locator(".pull-url:focus").count()).toBe(1);

    // Pull with the client key, the admin key asked for not given, is refused on the card, and the text stays to try
    // again;
    await pull.click();
    await dismissAdminKeyDialog();
    const failure = card().locator(".placement-failure");
    await failure.waitFor();
    expect(await failure.textContent()).toContain("needs an admin key");
    await pull.and(page.locator(":enabled")).waitFor();
    expect(await url.inputValue()).toBe(modelUrl);

    // with the admin key it starts: the form empties, the refusal goes, and the pull shows downloading with a bar
    // that knows the file's size;
    await page.evaluate(`localStorage.setItem("coordinator.apiKey", ${JSON.stringify(ADMIN_KEY)})`);
    await pull.click();
    await pullItem("downloading").waitFor();
    expect(await pullItem("downloading").locator(".pull-name").textContent()).toBe("pulled.gguf");
    await pullItem("downloading").locator(`[role="progressbar"][aria-valuemax="${bytes.length}"]`).waitFor();
    expect(await url.inputValue()).toBe("");
    await failure.waitFor({ state: "hidden" });

    // when the connection drops, the worker resumes and gets another third before the server stalls again: the bar
    // moves (the worker reports as each answer starts, and at most every 250 ms);
    server.dropConnections();
    await pullItem("downloading").locator('[role="progressbar"]:not([aria-valuenow="0"])').waitFor();
    expect(await pullItem("downloading").locator(".pull-bytes").textContent()).toMatch(/^[1-9]\d* MB of 8 MB · [1-9]\d*%$/);
    mkdirSync(ARTIFACTS, { recursive: true });
    await card().screenshot({ path: new URL("dashboard-pull.png", ARTIFACTS).pathname });

    // once the server lets go, the worker resumes again: the pull is done at 100%, and the model is in the card's library,
    // where Load loads it;
    server.stallAfter = undefined;
    server.dropConnections();
    await pullItem("done").waitFor();
    await pullItem("done").locator(`[role="progressbar"][aria-valuenow="${bytes.length}"]`).waitFor();
    expect(await pullItem("done").locator(".pull-bytes").textContent()).toBe("8 MB of 8 MB · 100%");
    await libraryItem("pulled").getByRole("button", { name: "Load" }).click();
    await chip("pulled").and(page.locator('[data-state="loaded"]')).waitFor();

    // and a pull whose file does not match its sha256 fails, its error on the card; the done one is listed after it.
    await url.fill(`${server.origin}/files/wrong.gguf`);
    await sha256.fill("0".repeat(64));
    await pull.click();
    await pullItem("failed").waitFor();
    expect(await pullItem("failed").locator(".pull-name").textContent()).toBe("wrong.gguf");
    expect(await pullItem("failed").locator(".pull-error").textContent()).toMatch(/wrong\.gguf arrived with sha256 [0-9a-f]{64}, not 0{64}/);
    expect(await card().locator(".pull-item").evaluateAll((items) => items.map((item) => item.getAttribute("data-state")))).toEqual(["failed", "done"]);
    expect(await failure.isVisible()).toBe(false);
  });
});
