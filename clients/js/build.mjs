// `npm run build` → dist/fanline.js (one ES module, no dependencies) + dist/*.d.ts.
// `node build.mjs OUTDIR` builds elsewhere (the test script compares it with the committed dist).
import { build } from "esbuild";
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
import { createRequire } from "node:module";

const out = process.argv[2] ?? "dist";
rmSync(out, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
execFileSync(process.execPath, [tsc, "-p", "tsconfig.json", "--outDir", out], { stdio: "inherit" });
await build({
  entryPoints: ["src/fanline.ts"],
  bundle: true,
  format: "esm",
  target: "es2020",
  legalComments: "none",
  outfile: `${out}/fanline.js`,
  logLevel: "warning",
});
