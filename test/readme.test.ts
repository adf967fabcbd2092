// The README's promises stay true: every flag is in its configuration table, and its commands are the real ones.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { serveOptions, workerOptions } from "../src/config.js";

const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
const packageJson = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as {
  bin: Record<string, string>;
  scripts: Record<string, string>;
};

describe("README", () => {
  it("documents every flag with its environment variable", () => {
    for (const spec of [...serveOptions, ...workerOptions]) {
      expect(readme, spec.name).toMatch(new RegExp(`\\| \`--${spec.name}\` \\| \`${spec.env}\` \\|`));
    }
  });

  it("states the minimum length of an operator-chosen worker token and of API keys", () => {
    for (const flag of ["worker-token", "api-key", "api-keys-file"]) {
      expect(readme, flag).toMatch(new RegExp(`\\| \`--${flag}\` \\|[^\\n]*at least 8 characters`));
    }
  });

  it("gives the two set-up commands that the package really provides", () => {
    expect(readme).toContain("npm install && npx coordinator --demo");
    expect(readme).toContain("npm test");
    expect(packageJson.bin.coordinator).toBe("dist/cli.js");
    expect(packageJson.scripts.prepare).toBeDefined();
  });
});
