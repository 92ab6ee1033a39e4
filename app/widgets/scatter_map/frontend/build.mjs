// One static bundle for the app: build/index.html and build/scatter_map.js, minified, no source maps.
// streamlit-component-lib's ArrowTable (apache-arrow, ~190 KB) is only needed for dataframe
// arguments, which this component never receives: a stub stands in for it.
import { copyFile, mkdir } from "node:fs/promises";
import * as esbuild from "esbuild";

const noArrow = {
  name: "no-arrow",
  setup(build) {
    build.onResolve({ filter: /^\.\/ArrowTable$/ }, () => ({ path: "ArrowTable", namespace: "stub" }));
    build.onLoad({ filter: /.*/, namespace: "stub" }, () => ({ contents: "export class ArrowTable {}" }));
  },
};

await mkdir("build", { recursive: true });
await esbuild.build({
  entryPoints: ["src/main.js"],
  outfile: "build/scatter_map.js",
  bundle: true,
  minify: true,
  format: "iife",
  target: "es2020",
  legalComments: "eof",
  plugins: [noArrow],
  logLevel: "info",
});
await copyFile("src/index.html", "build/index.html");
