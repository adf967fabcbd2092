// The one relay from a task to a streamed reply, for every dialect: task events → parser → the dialect's encoder →
// SSE. Flow control (reading nothing while the client is behind), the thinking stage and the end of the task live
// here once; a dialect only says how its frames look.
import type { Master } from "../master/master.js";
import type { CoordinatorError } from "../master/errors.js";
import type { Task, TaskEvent } from "../master/task.js";
import type { Delta, ReplyShaper } from "./chat-response.js";
import type { ChatRequestReport } from "./request-log.js";
import type { SseStream } from "./sse.js";

/** How one dialect writes a streamed reply: each method returns ready SSE text (possibly several frames, or ""). */
export interface StreamEncoder {
  /** Frames sent as soon as the stream opens, before the task's first output (a dialect's start-of-reply events). */
  opening?(): string;
  /** Frames for the reply's next deltas. */
  deltas(deltas: readonly Delta[]): string;
  /** The last frames of a finished reply (its last deltas, its end, and the dialect's end marker). */
  finished(deltas: readonly Delta[], event: Extract<TaskEvent, { type: "finished" }>, shaper: ReplyShaper): string;
  /** The last frames of a failed reply: its last deltas, the error in the dialect's shape, its end marker. */
  failed(deltas: readonly Delta[], error: CoordinatorError): string;
}

/** Relays `task` to `sse` through `encoder` until the task ends; a relay that throws cancels the task. */
export function relayStream(master: Master, task: Task, shaper: ReplyShaper, sse: SseStream, encoder: StreamEncoder, report: ChatRequestReport): void {
  const relay = async () => {
    if (encoder.opening) sse.write(encoder.opening());
    const deltas: Delta[] = [];
    for (;;) {
      if (task.events.done) return;
      await task.events.ready();
      // Drain everything buffered: a burst of chunks becomes one write.
      let event: TaskEvent | undefined;
      while ((event = task.events.pull()) !== undefined) {
        if (event.type === "chunk") {
          if (event.logprobs) shaper.pushWithLogprobs(event.text, event.logprobs, deltas);
          else shaper.push(event.text, deltas, event.tokens);
          master.reasoning(task, shaper.inReasoning);
          continue;
        }
        if (event.type === "embedding") continue; // only embedding tasks have them (the master sees to it)
        report.ended(event, 200);
        if (event.type === "finished") {
          shaper.finish(deltas);
          sse.end(encoder.finished(deltas, event, shaper));
        } else if (event.type === "failed") sse.end(encoder.failed(deltas, event.error));
        else sse.close();
        return;
      }
      if (deltas.length > 0) {
        sse.write(encoder.deltas(deltas));
        deltas.length = 0;
      }
      // Flow control: read nothing more from the task while the client is behind, so the worker's window stays
      // used up and it pauses; the slow-client rule ends the wait if the client never catches up.
      if (sse.backlogged) await sse.drained();
    }
  };
  relay().catch((error: unknown) => {
    report.log.error({ task: task.id, err: error }, "stream relay failed");
    report.broken(200);
    master.cancel(task, "the coordinator failed to relay the stream");
    sse.close();
  });
}
