// The dashboard page: follows the cluster feed (/v1/cluster/events) and draws each view it sends; reconnects
// by itself when the feed drops (a coordinator restart) and says so meanwhile, and at once, with the new key, when
// the stored key changes. Plain modules, no dependencies.
import { askForKey, authHeaders, onKeyChange, readEvents, setUpKeyDialog } from "./api.js";
import { onActionChange } from "./card-actions.js";
import { $ } from "./dom.js";
import { setUpPlayground, showModels } from "./playground.js";
import { render } from "./view.js";

/** A feed silent this long (it sends a view every second) is taken for dead and reopened. */
const FEED_SILENCE_MS = 5_000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** The view drawn last: drawn again when a card's action starts or ends, between two views. */
let lastView;
/** The open feed's controller: aborted with KEY_CHANGED when the stored key changes. */
let feed;
const KEY_CHANGED = new Error("the API key changed");

function setConnection(state, text) {
  $("connection").dataset.state = state;
  $("connection-text").textContent = text;
  document.body.classList.toggle("stale", state !== "live");
}

/** Follows the feed forever: reconnects with backoff when it drops (a coordinator restart), asks for a key on 401. */
async function follow() {
  let delay = 500;
  for (;;) {
    const controller = new AbortController();
    feed = controller;
    let watchdog;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => controller.abort(), FEED_SILENCE_MS);
    };
    try {
      arm();
      const response = await fetch("/v1/cluster/events", { headers: authHeaders(), cache: "no-store", signal: controller.signal });
      if (response.status === 401) {
        clearTimeout(watchdog);
        setConnection("key", "API key needed");
        await askForKey();
        continue;
      }
      if (!response.ok || !response.body) throw new Error(`feed answered ${response.status}`);
      await readEvents(
        response,
        (data) => {
          delay = 500;
          setConnection("live", "live");
          const view = JSON.parse(data);
          lastView = view;
          render(view);
          showModels(view.models);
        },
        arm,
      );
    } catch {
      // Dropped, refused or silent: reconnect below (a key change: at once).
    } finally {
      clearTimeout(watchdog);
      controller.abort();
    }
    if (controller.signal.reason === KEY_CHANGED) continue;
    setConnection("reconnecting", "reconnecting…");
    await sleep(delay);
    delay = Math.min(delay * 2, 5_000);
  }
}

setUpKeyDialog();
setUpPlayground();
onActionChange(() => lastView && render(lastView));
onKeyChange(() => feed?.abort(KEY_CHANGED));
follow();
