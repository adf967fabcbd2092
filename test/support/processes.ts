// Runs the real `coordinator` command (from source, through tsx) as a child process, and reads what it prints.
import { type ChildProcess, spawn, type SpawnOptionsWithStdioTuple, type StdioNull, type StdioPipe } from "node:child_process";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));

export interface CliProcess {
  child: ChildProcess;
  output(): string;
  /** Resolves with the first match of `pattern` in stdout+stderr; rejects if the process exits first or on timeout. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export interface CliOptions {
  /** The child's limit of open file descriptors (`ulimit -n`), set by a shell that then becomes the process. */
  maxOpenFiles?: number;
}

export function spawnCli(args: string[], env: Record<string, string> = {}, options: CliOptions = {}): CliProcess {
  const cli = ["--import", "tsx", "src/cli.ts", ...args];
  const spawnOptions: SpawnOptionsWithStdioTuple<StdioNull, StdioPipe, StdioPipe> = {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  };
  const child =
    options.maxOpenFiles === undefined
      ? spawn(process.execPath, cli, spawnOptions)
      : spawn("sh", ["-c", `ulimit -n ${options.maxOpenFiles} && exec "$0" "$@"`, process.execPath, ...cli], spawnOptions);
  let text = "";
  const listeners = new Set<() => void>();
  const onData = (data: Buffer) => {
    text += data.toString();
    for (const listener of [...listeners]) listener();
  };
  child.stdout?.on("data", onData);
  child.stderr?.on("data", onData);
  let done = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => {
      done = true;
      resolve({ code, signal });
      for (const listener of [...listeners]) listener();
    }),
  );
  return {
    child,
    output: () => text,
    exited,
    waitFor(pattern, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => finish(new Error(`timed out waiting for ${pattern}; output:\n${text}`)), timeoutMs);
        const check = () => {
          const match = text.match(pattern);
          if (match) finish(undefined, match);
          else if (done) finish(new Error(`process exited before printing ${pattern}; output:\n${text}`));
        };
        const finish = (error?: Error, match?: RegExpMatchArray) => {
          clearTimeout(timer);
          listeners.delete(check);
          if (error) reject(error);
          else resolve(match as RegExpMatchArray);
        };
        listeners.add(check);
        check();
      });
    },
    async kill(signal = "SIGKILL") {
      if (done) return;
      child.kill(signal);
      await exited;
    },
  };
}
