// The one logger of the process (pino): JSON lines by default, quiet in tests unless asked.
import { pino, type Logger } from "pino";

export type { Logger };

export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

export function createLogger(level: LogLevel, name = "coordinator"): Logger {
  return pino({
    name,
    level,
    // Join tokens and API keys must never reach a log line, whatever object carries them.
    redact: { paths: ["token", "*.token", "apiKey", "*.apiKey", "authorization", "*.authorization"], censor: "[redacted]" },
  });
}

/** A logger that drops everything: the default for library use and tests. */
export const silentLogger: Logger = pino({ level: "silent" });
