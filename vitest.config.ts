import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Real servers, sockets and child processes: keep files apart, but let them run side by side.
    pool: "forks",
    // Two files at a time even on two cores (vitest would take one there): most of a test's time is waiting on
    // sockets, timers and child processes. The suite took 554 s one at a time and 329–340 s two at a time here.
    maxWorkers: 2,
    reporters: ["default"],
  },
});
