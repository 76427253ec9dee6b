/**
 * `npm run build`: one self-contained ES module per entrypoint in dist/
 * (api, worker, migrate, start, opsdesk), bundled by esbuild with every
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
 * TypeScript lines in stack traces). No `keepNames`: it wraps every function
 * created at run time in a defineProperty call (~3% of the API's CPU).
 */
import { build } from "esbuild"
import { rmSync } from "node:fs"

rmSync(new URL("../dist", import.meta.url), { recursive: true, force: true })
await build({
  entryPoints: ["api", "worker", "migrate", "start", "opsdesk"].map((name) => `src/bin/${name}.ts`),
  outdir: "dist",
  outExtension: { ".js": ".mjs" },
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node20",
  minifyWhitespace: true,
  minifySyntax: true,
  sourcemap: true,
  logLevel: "warning",
  // A native addon cannot be bundled: it is loaded from node_modules (the Docker image copies just it).
  external: ["@node-rs/argon2"],
  // Bundled CommonJS packages (pg, amqplib, ioredis) call require(): give the ES module one.
  banner: {
    js:
      "import { createRequire as __opsdeskRequire } from 'node:module'; const require = __opsdeskRequire(import.meta.url);"
  }
})
