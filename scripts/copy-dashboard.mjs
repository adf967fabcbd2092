// Build step: the dashboard's static files (src/dashboard) go to dist/dashboard, where the built server reads them.
import { cpSync, rmSync } from "node:fs";

const from = new URL("../src/dashboard/", import.meta.url);
const to = new URL("../dist/dashboard/", import.meta.url);
rmSync(to, { recursive: true, force: true });
cpSync(from, to, { recursive: true });
