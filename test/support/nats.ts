// A real nats-server with JetStream for the several-heads tests: a temporary store, a free port, and kill and
// restart on that same port and store (what an outage looks like to the heads).
import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";

export interface NatsServer {
  /** nats://127.0.0.1:PORT */
  url: string;
  port: number;
  /** Kills the server (SIGKILL: no goodbye to its clients) and waits for it to exit; its store stays. */
  kill(): Promise<void>;
  /** Starts it again on the same port and store. */
  restart(): Promise<void>;
  /** Kills it and removes its store. */
  stop(): Promise<void>;
}

/** Debian's nats-server: on the PATH, or where the package puts it (/usr/sbin is not on every user's PATH). */
function natsServerBinary(): string {
  const candidates = [...(process.env.PATH ?? "").split(delimiter).filter(Boolean).map((dir) => join(dir, "nats-server")), "/usr/sbin/nats-server"];
  for (const candidate of candidates) {
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  throw new Error("nats-server is not installed, and the several-heads tests need it: run `sh scripts/ensure-nats.sh` as root (or apt-get install nats-server)");
}

/** A port free now: listened on and closed, so a restarted server can take the same one again. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Spawns the server and resolves once it says it is ready (JetStream included); rejects if it exits first. */
function spawnServer(binary: string, port: number, store: string): Promise<ChildProcess> {
  const child = spawn(binary, ["-js", "-sd", store, "-a", "127.0.0.1", "-p", String(port)], { stdio: ["ignore", "ignore", "pipe"] });
  let output = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => fail(new Error(`nats-server did not start within 10 s:\n${output}`)), 10_000);
    const onData = (data: Buffer) => {
      output += data.toString();
      if (!output.includes("Server is ready")) return;
      clearTimeout(timer);
      child.stderr?.off("data", onData);
      // Keep reading, so a chatty server never blocks on a full pipe.
      child.stderr?.resume();
      child.off("exit", onExit);
      resolve(child);
    };
    const onExit = (code: number | null) => fail(new Error(`nats-server exited (${code}) before it was ready:\n${output}`));
    const fail = (error: Error) => {
      clearTimeout(timer);
      child.kill("SIGKILL");
      reject(error);
    };
    child.stderr?.on("data", onData);
    child.once("exit", onExit);
    child.once("error", (error) => fail(error));
  });
}

async function killServer(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGKILL");
  await exited;
}

export async function startNatsServer(): Promise<NatsServer> {
  const binary = natsServerBinary();
  const store = await mkdtemp(join(tmpdir(), "coordinator-nats-"));
  const port = await freePort();
  let child: ChildProcess | undefined;
  try {
    child = await spawnServer(binary, port, store);
  } catch (error) {
    await rm(store, { recursive: true, force: true });
    throw error;
  }
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    kill: () => killServer(child),
    async restart() {
      await killServer(child);
      child = await spawnServer(binary, port, store);
    },
    async stop() {
      await killServer(child);
      await rm(store, { recursive: true, force: true });
    },
  };
}

/**
 * Waits until the head at `url` (started with --nats) has read the keys every head shares: until then it cannot tell
 * whether its API is open, and its guarded routes (/v1/cluster among them) answer 503.
 */
export async function keysRead(url: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const body = (await (await fetch(`${url}/ready`)).json()) as Record<string, unknown>;
    if (!("keys" in body)) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`timed out waiting for the head at ${url} to read the keys`);
}

/** After a several-heads test: its workers stop, then its heads close, then nats-server stops (the lists emptied). */
export async function stopHeads(workers: Array<{ stop(): Promise<void> }>, heads: Array<{ close(): Promise<void> }>, nats: NatsServer | undefined): Promise<void> {
  for (const worker of workers.splice(0)) await worker.stop();
  for (const head of heads.splice(0)) await head.close();
  await nats?.stop();
}
