/**
 * `npm run build`: one self-contained ES module per entrypoint in dist/
 * (api, worker, relay, migrate, start, opsdesk), bundled by esbuild with every
 * dependency, so production runs `node dist/<name>.mjs` with no TypeScript
 * loader and no node_modules.
 *
 * Why a bundle and not `tsc` output: Node keeps the source text of every
 * module it loads, and the packages' barrels (effect, @effect/platform,
 * OpenTelemetry) bring far more code than the worker uses. Tree-shaken and
 * stripped of whitespace, the worker is ~3 MB of code instead of ~40 MB of
 * modules: its RSS while draining fell from ~240-280 MB (tsc output) and
 * ~330 MB (tsx) to ~190 MB (npm run bench). Identifiers are not minified; a
 * source map sits beside each file (`node --enable-source-maps` for
 * TypeScript lines in stack traces; `--no-sourcemap` leaves them out, as the Docker image does). No `keepNames`: it wraps every function
 * created at run time in a defineProperty call (~3% of the API's CPU).
 */
import { build } from "esbuild"
import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"

const dist = fileURLToPath(new URL("../dist", import.meta.url))
// In memory first: dist/ is replaced file by file once the whole build succeeded (below).
const result = await build({
  entryPoints: ["api", "worker", "relay", "migrate", "start", "opsdesk"].map((name) => `src/bin/${name}.ts`),
  outdir: "dist",
  outExtension: { ".js": ".mjs" },
  write: false,
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  minifyWhitespace: true,
  minifySyntax: true,
  // `--no-sourcemap`: the Docker image, where nothing would read them.
  sourcemap: !process.argv.includes("--no-sourcemap"),
  logLevel: "warning",
  // A native addon cannot be bundled: it is loaded from node_modules (the Docker image copies just it).
  external: ["@node-rs/argon2"],
  // Bundled CommonJS packages (pg, amqplib, ioredis) call require(): give the ES module one.
  banner: {
    js:
      "import { createRequire as __opsdeskRequire } from 'node:module'; const require = __opsdeskRequire(import.meta.url);"
  }
})

// Atomic per file, so two builds at once (`npm run start:api` and `start:worker` in two terminals) and a
// process starting meanwhile only ever see whole files: each is written beside its place, then renamed over it.
// Files of an earlier build that this one does not make (an entrypoint removed, maps after --no-sourcemap) go.
mkdirSync(dist, { recursive: true })
const made = new Set()
for (const file of result.outputFiles) {
  const temp = `${file.path}.${process.pid}.tmp`
  writeFileSync(temp, file.contents)
  renameSync(temp, file.path)
  made.add(Path.basename(file.path))
}
for (const name of readdirSync(dist)) {
  // `.tmp`: another build's file on its way in.
  if (!made.has(name) && !name.endsWith(".tmp")) rmSync(Path.join(dist, name), { recursive: true, force: true })
}
