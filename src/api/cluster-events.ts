// GET /v1/cluster/events: the dashboard's live feed, an SSE stream of the cluster view every second.
// Everything a stream starts (its tick, its listener) is let go when the stream is released.
import type { HttpBindings } from "@hono/node-server";
import type { Context } from "hono";
import type { ClusterActivity } from "../metrics/activity.js";
import { SseStream } from "./sse.js";

export interface ClusterEventsOptions {
  intervalMs: number;
  keepaliveMs: number;
  slowClientMs: number;
  slowClientBytes: number;
  /** Aborted when the coordinator closes: open feeds end cleanly instead of holding their connections. */
  closing: AbortSignal;
}

export function clusterEventsHandler(activity: ClusterActivity, options: ClusterEventsOptions) {
  return (c: Context): Response => {
    let timer: NodeJS.Timeout | undefined;
    const end = () => sse.close();
    const { sse, response } = SseStream.open(
      {
        keepaliveMs: options.keepaliveMs,
        slowClientMs: options.slowClientMs,
        slowClientBytes: options.slowClientBytes,
        observer: {
          opened() {},
          keepalive() {},
          released() {
            clearInterval(timer);
            options.closing.removeEventListener("abort", end);
          },
        },
      },
      c.req.raw.signal,
      (c.env as Partial<HttpBindings> | undefined)?.outgoing,
      c.res.headers,
    );
    if (options.closing.aborted) sse.close();
    if (!sse.isClosed) {
      // Each view replaces the last: a client that has not read the previous one gets none, so a feed never holds
      // more than one unread view.
      const send = () => {
        if (sse.backlog === 0) sse.data(JSON.stringify(activity.view()));
      };
      send();
      timer = setInterval(send, options.intervalMs);
      options.closing.addEventListener("abort", end, { once: true });
    }
    return response;
  };
}
