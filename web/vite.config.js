import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";
import { defineConfig } from "vite";

// sw.js with the list of every built file, so the installed app opens offline; its version is a
// hash of that list, so a new build replaces the old cache.
function serviceWorker() {
  return {
    name: "veche-service-worker",
    apply: "build",
    generateBundle(_options, bundle) {
      const files = Object.keys(bundle).sort().map((f) => `/${f}`);
      const precache = ["/", "/index.html", "/manifest.webmanifest", "/icon.svg", "/icon-192.png", "/icon-512.png",
        ...files.filter((f) => f !== "/index.html")];
      const version = createHash("sha256").update(precache.join("\n")).digest("hex").slice(0, 16);
      const source = readFileSync(new URL("./sw-template.js", import.meta.url), "utf8")
        .replace("__PRECACHE__", JSON.stringify(precache))
        .replace("__VERSION__", version);
      this.emitFile({ type: "asset", fileName: "sw.js", source });
    },
  };
}

// .br and .gz beside every script, style and wasm file: the server sends them to browsers that
// accept them (aiohttp's FileResponse), so a slow link carries a third of the bytes. zlib output
// depends only on its input and settings, so the build stays byte-identical.
function precompress() {
  return {
    name: "veche-precompress",
    apply: "build",
    // After writing: only then does the code hold its final text (Vite fills in its preload list late).
    writeBundle(options, bundle) {
      for (const fileName of Object.keys(bundle).sort()) {
        if (!/\.(js|css|wasm|html|svg|webmanifest)$/.test(fileName)) continue;
        const path = join(options.dir, fileName);
        const data = readFileSync(path);
        if (data.length < 1024) continue;
        const quality = process.env.VECHE_WEB_FAST ? 1 : 11;
        writeFileSync(`${path}.br`, brotliCompressSync(data, { params: { [constants.BROTLI_PARAM_QUALITY]: quality, [constants.BROTLI_PARAM_SIZE_HINT]: data.length } }));
        writeFileSync(`${path}.gz`, gzipSync(data, { level: 9 }));
      }
    },
  };
}

export default defineConfig({
  plugins: [serviceWorker(), precompress()],
  base: "/",
  build: {
    outDir: "../src/veche/web_client/dist",
    emptyOutDir: true,
    sourcemap: false,
    target: "es2022",
    assetsInlineLimit: 0,
    chunkSizeWarningLimit: 6000,
  },
});
