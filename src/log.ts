// The one logger of the process (pino): JSON lines by default, human-readable on a terminal, quiet in tests unless asked.
import { pino, type DestinationStream, type Logger } from "pino";
import { prettyFactory } from "pino-pretty";

export type { Logger };

export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
export type LogFormat = "json" | "pretty";

export interface LoggerOptions {
  /** `pretty` for people, `json` for machines; unset: pretty when the destination is a terminal. */
  format?: LogFormat | undefined;
  /** Where lines go; stdout by default. */
  destination?: (DestinationStream & { isTTY?: boolean }) | undefined;
}

/**
 * Secrets and user content never reach a log line, whatever object carries them: join tokens, API keys,
 * authorization headers, and prompts (messages) are censored by path.
 */
const redactedPaths = [
  "token",
  "*.token",
  "workerToken",
  "*.workerToken",
  "apiKey",
  "*.apiKey",
  "apiKeys",
  "*.apiKeys",
  "upstreamKey",
  "*.upstreamKey",
  "authorization",
  "*.authorization",
  "headers.authorization",
  "*.headers.authorization",
  "messages",
  "*.messages",
  "prompt",
  "*.prompt",
];

export function createLogger(level: LogLevel, name = "coordinator", options: LoggerOptions = {}): Logger {
  const destination = options.destination ?? process.stdout;
  const format = options.format ?? (destination.isTTY ? "pretty" : "json");
  const settings = { name, level, redact: { paths: redactedPaths, censor: "[redacted]" } };
  if (format === "json") return pino(settings, destination);
  // Formatted in-line and written synchronously: no worker thread, and the destination may be any line sink.
  const prettify = prettyFactory({
    colorize: destination.isTTY === true,
    translateTime: "SYS:HH:MM:ss.l",
    ignore: "pid,hostname",
  });
  return pino(settings, { write: (line: string) => destination.write(prettify(line)) });
}

/**
 * A child of `log` for lines made only of flat fields the code builds itself (the per-request completion line): the
 * same keys are redacted, at the top level only. The wildcard paths cost ~16 µs a line, more than the rest of the
 * line, and such a line has no nested object for them to search.
 */
export function flatLineLogger(log: Logger): Logger {
  const paths = redactedPaths.filter((path) => !path.includes("."));
  return log.child({}, { redact: { paths, censor: "[redacted]" } });
}

/** A logger that drops everything: the default for library use and tests. */
export const silentLogger: Logger = pino({ level: "silent" });
