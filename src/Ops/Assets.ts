/**
 * uPlot (MIT, node_modules/uplot), the dashboard's charts, read from the
 * package at start-up and inlined in the page (so nothing comes from a CDN).
 * Read at run time rather than imported as text: `tsx` (npm run dev, the CLI
 * from source) and vitest cannot load text imports; the image copies
 * node_modules/uplot/dist beside the bundles, as it does the Argon2 addon.
 */
import { readFileSync } from "node:fs"
import { createRequire } from "node:module"

const resolve = createRequire(import.meta.url).resolve
const read = (file: string) => readFileSync(resolve(`uplot/dist/${file}`), "utf8")

export const UPLOT_JS: string = read("uPlot.iife.min.js")
export const UPLOT_CSS: string = read("uPlot.min.css")
