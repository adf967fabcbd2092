// The dashboard's API key, in a real browser: an admin action refused for a client key asks for an admin key and is
// sent again with it; the header's key button changes the stored key or forgets it, and the live feed follows.
import { mkdirSync } from "node:fs";
import type { Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { RunningCoordinator } from "../src/coordinator.js";
import { ARTIFACTS, openBrowser, type TestBrowser } from "./support/browser.js";
import { eventually, startSimWorker, startTestCoordinator, type TestWorker } from "./support/cluster.js";

const GiB = 2 ** 30;
const CLIENT_KEY = "sk-client-key-0123456789";
const OTHER_CLIENT_KEY = "sk-other-client-key-9876543210";
const ADMIN_KEY = "sk-admin-key-0123456789";

interface ClusterState {
  workers: Array<{ name: string; placement: { models: Array<{ id: string; state: string }> } | null }>;
}

describe("the dashboard's API key", () => {
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
  const dialog = () => page.locator("#key-dialog[open]");
  // (strings: the test is compiled without DOM types)
  const storedKey = () => page.evaluate(`localStorage.getItem("coordinator.apiKey")`);

  /** Opens the dashboard with nothing stored, and gives the key it asks for. */
  async function openWithKey(url: string, key: string): Promise<void> {
    await page.goto(`${url}/`);
    await page.evaluate("localStorage.clear()");
    await page.reload();
    await dialog().waitFor();
    expect(await page.locator("#key-title").textContent()).toBe("API key required");
    await page.locator("#key-input").fill(key);
    await page.locator("#key-form button[type=submit]").click();
    await page.locator('#connection[data-state="live"]').waitFor();
  }

  async function modelsOn(name: string): Promise<Array<{ id: string; state: string }>> {
    const response = await fetch(`${coordinator?.url}/v1/cluster`, { headers: { Authorization: `Bearer ${CLIENT_KEY}` } });
    const cluster = (await response.json()) as ClusterState;
    return cluster.workers.find((w) => w.name === name)?.placement?.models ?? [];
  }

  it("asks for an admin key when a client key may not load a model, then loads it with the admin key given", async () => {
    // Given a coordinator with two client keys and an admin key, a worker with a model in its library, and the
    // dashboard given a client key when it asked,
    coordinator = await startTestCoordinator({ apiKey: [CLIENT_KEY, OTHER_CLIENT_KEY], adminKey: [ADMIN_KEY], feedIntervalMs: 100 });
    worker = await startSimWorker(coordinator, { name: "shelf", library: [{ id: "alpha", sizeBytes: 2 * GiB, loadMs: 300 }], memoryBytes: 8 * GiB });
    await openWithKey(coordinator.url, CLIENT_KEY);
    const load = card().locator('.library-item[data-model="alpha"]').getByRole("button", { name: "Load" });

    // when Load is clicked, the coordinator refuses the client key and the page asks for an admin key, saying why;
    await load.click();
    await dialog().waitFor();
    expect(await page.locator("#key-title").textContent()).toBe("Admin key required");
    expect(await page.locator("#key-text").textContent()).toContain("This action needs an admin key");
    expect(await page.locator("#key-input").inputValue()).toBe("");
    expect(await page.locator("#key-cancel").isVisible()).toBe(true);
    expect(await modelsOn("shelf")).toEqual([]);
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: new URL("dashboard-admin-key.png", ARTIFACTS).pathname });

    // given another client key instead, the load is sent again once: refused, it shows on the card, not asking again;
    await page.locator("#key-input").fill(OTHER_CLIENT_KEY);
    await page.locator("#key-form button[type=submit]").click();
    const failure = card().locator(".placement-failure");
    await failure.waitFor();
    expect(await failure.textContent()).toContain("needs an admin key");
    expect(await dialog().count()).toBe(0);
    expect(await storedKey()).toBe(OTHER_CLIENT_KEY);
    expect(await modelsOn("shelf")).toEqual([]);

    // Load again asks again; given the admin key, the load is sent again with it and takes effect: the model loads on
    // that worker;
    await load.click();
    await dialog().waitFor();
    await page.locator("#key-input").fill(ADMIN_KEY);
    await page.locator("#key-form button[type=submit]").click();
    await dialog().waitFor({ state: "detached" });
    await eventually(async () => (await modelsOn("shelf")).some((m) => m.id === "alpha" && m.state === "loaded"), "alpha loaded on shelf");
    await card().locator('.placed[data-model="alpha"][data-state="loaded"]').waitFor();

    // the browser now keeps the admin key, the feed is live with it, and the card's failure is gone.
    expect(await storedKey()).toBe(ADMIN_KEY);
    await page.locator('#connection[data-state="live"]').waitFor();
    expect(await failure.isVisible()).toBe(false);
  });

  it("changes the stored key from the header's key button, and forgets it", async () => {
    // Given a coordinator with two client keys, and the dashboard live with the first,
    coordinator = await startTestCoordinator({ apiKey: [CLIENT_KEY, OTHER_CLIENT_KEY], feedIntervalMs: 100 });
    worker = await startSimWorker(coordinator, { name: "shelf" });
    await openWithKey(coordinator.url, CLIENT_KEY);
    await card().waitFor();
    const keyButton = page.getByRole("button", { name: "API key" });

    // when the key button is pressed, the dialog offers to change or forget the key; Cancel keeps it;
    await keyButton.click();
    await dialog().waitFor();
    expect(await page.locator("#key-title").textContent()).toBe("API key");
    await page.getByRole("button", { name: "Forget key" }).and(page.locator(":enabled")).waitFor();
    await page.getByRole("button", { name: "Cancel" }).click();
    await dialog().waitFor({ state: "detached" });
    expect(await storedKey()).toBe(CLIENT_KEY);

    // a key saved there is stored, and the feed goes on with it;
    await keyButton.click();
    await page.locator("#key-input").fill(OTHER_CLIENT_KEY);
    await page.locator("#key-form button[type=submit]").click();
    await dialog().waitFor({ state: "detached" });
    expect(await storedKey()).toBe(OTHER_CLIENT_KEY);
    await page.locator('#connection[data-state="live"]').waitFor();

    // a wrong key saved there is used at once: the feed reopens with it, is refused, and the page asks for a key;
    await keyButton.click();
    await page.locator("#key-input").fill("sk-not-a-key-000000");
    await page.locator("#key-form button[type=submit]").click();
    await page.locator('#connection[data-state="key"]').waitFor();
    await dialog().waitFor();
    expect(await page.locator("#key-title").textContent()).toBe("API key required");
    expect(await page.locator("#key-cancel").isVisible()).toBe(false);
    await page.locator("#key-input").fill(OTHER_CLIENT_KEY);
    await page.locator("#key-form button[type=submit]").click();
    await page.locator('#connection[data-state="live"]').waitFor();

    // and Forget removes the key from the browser: the feed reopens without one and the page asks for a key again.
    await keyButton.click();
    await page.getByRole("button", { name: "Forget key" }).click();
    await page.locator('#connection[data-state="key"]').waitFor();
    expect(await storedKey()).toBeNull();
    await dialog().waitFor();
    expect(await page.locator("#key-title").textContent()).toBe("API key required");
  });
});
