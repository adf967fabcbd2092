// Child processes of the bench and what the kernel says they used: CPU seconds and resident memory from /proc.
import { type ChildProcess, fork, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import type { HostCommand } from "./host.js";

const CLOCK_TICKS = 100;

export interface ProcessStats {
  cpuSeconds: number;
  rssBytes: number;
}

/** CPU time (user + system) and RSS of a process, read from /proc. */
export function statsOf(pid: number): ProcessStats {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const cpuSeconds = (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return { cpuSeconds, rssBytes: rssKb * 1024 };
}

/** A bench host child (bench/host.ts) driven over IPC. */
export class Host {
  private nextId = 0;
  private readonly pending = new Map<number, (reply: Record<string, unknown>) => void>();
  private readonly listeners = new Set<(event: Record<string, unknown>) => void>();

  private constructor(readonly child: ChildProcess) {
    child.on("message", (message: Record<string, unknown>) => {
      if (typeof message.reply === "number") {
        this.pending.get(message.reply)?.(message);
        this.pending.delete(message.reply);
      } else for (const listener of this.listeners) listener(message);
    });
  }

  static start(execArgv: string[] = []): Host {
    const script = fileURLToPath(new URL("./host.ts", import.meta.url));
    return new Host(fork(script, [], { execArgv: ["--import", "tsx", ...execArgv], stdio: ["ignore", "inherit", "inherit", "ipc"] }));
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  stats(): ProcessStats {
    return statsOf(this.pid);
  }

  async run<T extends Record<string, unknown>>(command: HostCommand): Promise<T> {
    const id = this.nextId++;
    const reply = await new Promise<Record<string, unknown>>((resolve) => {
      this.pending.set(id, resolve);
      this.child.send({ ...command, id });
    });
    if (!reply.ok) throw new Error(`host ${command.cmd} failed: ${String(reply.error)}`);
    return reply as T;
  }

  onEvent(listener: (event: Record<string, unknown>) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  stop(): Promise<void> {
    return stopChild(this.child);
  }
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill("SIGKILL"), 3_000);
    child.once("exit", () => {
      clearTimeout(force);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

/** The Portkey AI gateway (devDependency) on `port`, started offline. */
export async function startPortkey(port: number): Promise<{ pid: number; url: string; stop(): Promise<void> }> {
  const require = createRequire(import.meta.url);
  const script = require.resolve("@portkey-ai/gateway/build/start-server.js");
  const shim = fileURLToPath(new URL("./portkey-fetch-shim.mjs", import.meta.url));
  const child = spawn(process.execPath, ["--import", shim, script, `--port=${port}`, "--headless"], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, NODE_ENV: "production" },
  });
  child.stdout?.resume();
  child.stderr?.resume();
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      await fetch(url);
      break;
    } catch {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error("the Portkey gateway did not start");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  return { pid: child.pid ?? 0, url, stop: () => stopChild(child) };
}

/** Headers that make Portkey proxy an OpenAI-compatible server at `baseUrl` (ending in /v1). */
export function portkeyHeaders(baseUrl: string): Record<string, string> {
  return { "x-portkey-provider": "openai", "x-portkey-custom-host": baseUrl, Authorization: "Bearer unused" };
}
