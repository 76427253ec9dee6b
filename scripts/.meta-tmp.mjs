import { build } from "esbuild"
const [entry, filter] = process.argv.slice(2)
const r = await build({ entryPoints: [`src/bin/${entry}.ts`], bundle: true, platform: "node", format: "esm", target: "node20", minifyWhitespace: true, minifySyntax: true, write: false, metafile: true, external: ["@node-rs/argon2"], outfile: "/tmp/x.mjs", logLevel: "error" })
const out = Object.values(r.metafile.outputs)[0]
Object.entries(out.inputs).filter(([f]) => f.includes(filter)).sort((a, b) => b[1].bytesInOutput - a[1].bytesInOutput).slice(0, 12).forEach(([f, v]) => console.log(String(v.bytesInOutput).padStart(9), f))
// who imports the biggest?
const inputs = r.metafile.inputs
const big = Object.entries(out.inputs).filter(([f]) => f.includes(filter)).sort((a, b) => b[1].bytesInOutput - a[1].bytesInOutput)[0][0]
for (const [f, v] of Object.entries(inputs)) if (v.imports.some((i) => i.path === big)) console.log("imported by", f)
