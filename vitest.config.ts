import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Real servers, sockets and child processes: keep files apart, but let them run side by side.
    pool: "forks",
    reporters: ["default"],
  },
});
