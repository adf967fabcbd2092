// Pulls planned: which workers download a model file (POST /v1/models/pull), as Pull records for applyPlacement.
import { nanoid } from "nanoid";
import { PlacementError } from "../errors.js";
import type { PlacementState, Pull } from "./state.js";

/** POST /v1/models/pull, validated. */
export interface PullRequest {
  url: string;
  fileName?: string;
  sha256?: string;
  headers?: Record<string, string>;
  /** Worker ids or names; absent: every worker that pulls. */
  workers?: string[];
}

/** A pull per target worker, not yet started; PlacementError for a worker that is unknown or cannot pull. */
export function plannedPulls(state: PlacementState, request: PullRequest): Pull[] {
  const pullers = [...state.workers.values()].filter((w) => w.pulls);
  const targets = request.workers === undefined ? pullers : request.workers.map((name) => pullers.find((w) => w.workerId === name || w.name === name));
  const missing = request.workers?.find((_, i) => targets[i] === undefined);
  if (missing !== undefined) throw new PlacementError(`No connected worker '${missing}' pulls models (it needs a models dir).`, 404);
  if (targets.length === 0) throw new PlacementError("No connected worker pulls models (a worker needs a models dir to pull into).", 409);
  const at = Date.now();
  return targets.flatMap((worker) =>
    worker
      ? [
          {
            id: `pull-${nanoid(10)}`,
            workerId: worker.workerId,
            workerName: worker.name,
            url: request.url,
            fileName: request.fileName,
            state: "downloading" as const,
            receivedBytes: 0,
            totalBytes: undefined,
            sha256: undefined,
            error: undefined,
            startedAt: at,
            endedAt: undefined,
          },
        ]
      : [],
  );
}
