// What the placer may ask of the master: its one reducer, the registry's index of served models, the queues.
import type { ClusterState } from "../cluster/state.js";
import type { Master } from "../master.js";
import type { PlacerHost } from "./placer.js";
import { placementValue } from "./planning.js";

export function placerHost(master: Master, state: ClusterState): PlacerHost {
  return {
    log: master.options.log,
    dispatch: (event) => master.dispatch(event),
    isServed: (model) => state.workers.isServed(model),
    notify: (notice) => master.observers.modelPlacement(notice),
    waitingModels: () => state.queues.depths().keys(),
    failWaiting: (model, error) => {
      for (const task of [...state.queues.all()]) if (task.model === model) master.fail(task, error);
    },
    leading: () => master.planning.leading,
    wantLoad: (model) => master.planning.wantLoad(model),
    wantUnloadIdle: (model) => master.planning.wantUnloadIdle(model),
    sharePlacement: async (placement) => {
      await master.placements.create(placement.id, placementValue(placement));
    },
    endPlacement: (id) => master.placements.delete(id),
    busy: (workerId) => state.workers.get(workerId)?.busy ?? 0,
    inUse: (workerId, model) => {
      if (state.queues.depth(model) > 0) return true;
      const worker = state.workers.get(workerId);
      if (!worker) return false;
      for (const task of worker.slots.values()) if (task.model === model) return true;
      // A task being stopped still runs on the worker until it acknowledges: its model is in use until then.
      for (const stopping of worker.cancelling.values()) if (stopping === model) return true;
      return false;
    },
  };
}
