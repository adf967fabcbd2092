// The one log line a chat request leaves when it completes (model, worker, status, tokens, TTFT, duration,
// cancellation stage), and the request metrics only the API sees (prompt tokens). Never the prompt or a key.
import type { Context } from "hono";
import type { Logger } from "../log.js";
import type { Master } from "../master/master.js";
import type { Task, TaskEvent } from "../master/task.js";
import type { CoordinatorMetrics } from "../metrics/metrics.js";
import { mapError } from "./errors.js";
import { requestIdOf, requestLogOf } from "./request-context.js";

/** How a task's output ended, as the route read it from the task's events. */
export type FinalEvent = Exclude<TaskEvent, { type: "chunk" } | { type: "embedding" }>;

export class ChatRequestReport {
  readonly requestId: string;
  readonly log: Logger;
  private readonly startedAt = Date.now();
  /** Which API answered (`/v1/chat/completions`, `/v1/messages`, `/v1/responses`). */
  private readonly route: string;
  private model: string | undefined;
  private stream = false;
  private task: Task | undefined;
  private reported = false;

  /**
   * `lineLog` writes the completion line (see flatLineLogger); `fallbackLog` is for the request's other lines when
   * the request-context middleware did not give it a logger of its own.
   */
  constructor(
    private readonly c: Context,
    private readonly master: Master,
    fallbackLog: Logger,
    private readonly lineLog: Logger,
    private readonly metrics: CoordinatorMetrics | undefined,
  ) {
    this.requestId = requestIdOf(c);
    this.route = c.req.routePath === "/*" ? c.req.path : c.req.routePath;
    this.log = requestLogOf(c, fallbackLog);
    c.set("requestLogged", true);
  }

  /** The request was valid; `model` is what it asked for. */
  parsed(model: string, stream: boolean): void {
    this.model = model;
    this.stream = stream;
    this.c.set("model", model);
  }

  /** Where the request came from, for the task's hints (logs and the dashboard). */
  get origin(): { requestId: string | undefined; route: string } {
    return { requestId: this.requestId, route: this.route };
  }

  /** The master admitted it as `task`. */
  admitted(task: Task): void {
    this.task = task;
  }

  /** Answered before any task ran (invalid, unknown model, queue full, …): logs, and returns the response. */
  rejected(response: Response): Response {
    this.write({ status: response.status, outcome: "rejected" });
    return response;
  }

  /** The task's output ended with `event`; `status` is the HTTP status the client got (200 for a stream). */
  ended(event: FinalEvent, status: number): void {
    if (event.type === "finished") {
      const worker = this.workerName();
      if (worker && this.model) this.metrics?.promptTokens(this.model, worker, event.usage.promptTokens, event.usage.cachedTokens);
      const cachedTokens = event.usage.cachedTokens ?? 0;
      this.write({ status, outcome: "finished", finishReason: event.finishReason, promptTokens: event.usage.promptTokens, ...(cachedTokens > 0 && { cachedTokens }) });
    } else if (event.type === "failed") {
      this.write({ status, outcome: "failed", error: mapError(event.error).body.error.code ?? "error" });
    } else {
      this.write({ status, outcome: "cancelled", cancelStage: event.stage });
    }
  }

  /** The route itself failed while relaying (a bug, logged apart with its stack). */
  broken(status: number): void {
    this.write({ status, outcome: "failed", error: "relay_failed" });
  }

  private workerName(): string | undefined {
    const id = this.task?.workerId;
    return id ? this.master.workerName(id) : undefined;
  }

  private write(fields: Record<string, unknown>): void {
    if (this.reported) return;
    this.reported = true;
    const task = this.task;
    const line: Record<string, unknown> = {
      requestId: this.requestId,
      route: this.route,
      model: this.model,
      stream: this.stream,
      ...fields,
      durationMs: Date.now() - this.startedAt,
    };
    if (task) {
      line.task = task.id;
      line.worker = this.workerName();
      line.workerId = task.workerId;
      line.completionTokens = task.completionTokens;
      line.attempts = task.attempts;
      if (task.firstTokenAt !== undefined) line.ttftMs = task.firstTokenAt - task.createdAt;
      if (task.assignedAt !== undefined) line.queueMs = task.assignedAt - task.createdAt;
    }
    const level = fields.outcome === "failed" ? "warn" : "info";
    this.lineLog[level](line, "chat request completed");
  }
}
