// Debian's chromium driven by playwright-core, for the dashboard tests: a fresh profile per browser, and the page's
// uncaught errors collected (a CSP violation or a bug: none are expected).
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Page } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";
/** Where the tests leave screenshots for people to look at. */
export const ARTIFACTS = new URL("../../test-artifacts/", import.meta.url);

const chromiumArgs = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export interface TestBrowser {
  page: Page;
  /** Uncaught errors in the page's scripts. */
  pageErrors: string[];
  close(): Promise<void>;
}

export async function openBrowser(): Promise<TestBrowser> {
  // `npm test` installs it first (scripts/ensure-browser.sh); never skip, say what is missing.
  if (!existsSync(CHROMIUM)) throw new Error(`Debian's chromium is needed at ${CHROMIUM}: apt-get install chromium`);
  const profile = mkdtempSync(join(tmpdir(), "dashboard-test-"));
  // A fresh profile per browser: launchPersistentContext passes it as --user-data-dir.
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: chromiumArgs,
    viewport: { width: 1440, height: 960 },
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(10_000);
  const pageErrors: string[] = [];
  page.on("pageerror", (error) => pageErrors.push(error.message));
  return {
    page,
    pageErrors,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
