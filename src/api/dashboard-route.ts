// GET / and /dashboard/*: the live dashboard, static files shipped with the package (src/dashboard, copied to
// dist/dashboard by the build). The page itself needs no key; the data it fetches is guarded like the API.
import { readFile } from "node:fs/promises";
import { Hono } from "hono";
import { errorResponse, InvalidRequestError } from "./errors.js";

const root = new URL("../dashboard/", import.meta.url);

const scripts = ["dashboard.js", "api.js", "card-actions.js", "dom.js", "format.js", "placement.js", "playground.js", "pulls.js", "view.js"];

/** Every file the page loads, by URL path: nothing else under src/dashboard is served. */
const assets: Record<string, { file: string; type: string }> = {
  "/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/dashboard/dashboard.css": { file: "dashboard.css", type: "text/css; charset=utf-8" },
  ...Object.fromEntries(scripts.map((file) => [`/dashboard/${file}`, { file, type: "text/javascript; charset=utf-8" }])),
};

/** Only our own files, and no inline script: a page that holds an API key should run nothing else. */
const headers = {
  "Cache-Control": "no-cache",
  "X-Content-Type-Options": "nosniff",
  "Referrer-Policy": "no-referrer",
  "Content-Security-Policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
};

export function dashboardRoutes(): Hono {
  const app = new Hono();
  const loaded = new Map<string, Promise<string>>();
  const load = (file: string) => {
    let text = loaded.get(file);
    if (!text) {
      text = readFile(new URL(file, root), "utf8");
      // A failed read is not cached: the next request tries again.
      text.catch(() => loaded.delete(file));
      loaded.set(file, text);
    }
    return text;
  };
  for (const [path, asset] of Object.entries(assets)) {
    app.get(path, async (c) => {
      let text: string;
      try {
        text = await load(asset.file);
      } catch {
        return errorResponse(
          new InvalidRequestError("The dashboard's files are missing from this install; run `npm run build`.", null, "not_found", 404),
        );
      }
      return c.body(text, 200, { "Content-Type": asset.type, ...headers });
    });
  }
  return app;
}
