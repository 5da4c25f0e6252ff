// Veche web client service worker: keeps the app itself (never the Matrix API) so that it opens
// offline; the rooms last seen come from the page's own storage. The build fills in PRECACHE.
const PRECACHE = ["/","/index.html","/manifest.webmanifest","/icon.svg","/icon-192.png","/icon-512.png","/assets/Session-D4VQUJUj.js","/assets/index-D08DZn8D.js","/assets/index-DFXgfnRM.css","/assets/matrix-sdk-crypto-wasm-Dph_k--m.js","/assets/matrix_sdk_crypto_wasm_bg-Mlrn556D.wasm","/assets/rust-crypto-3CQUcnjD.js"];
const CACHE = "veche-web-af3205c3d18a1d38";

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((c) => c.addAll(PRECACHE)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith("veche-web-") && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

function isApi(url) {
  return url.pathname.startsWith("/_matrix") || url.pathname.startsWith("/.well-known") || url.pathname === "/health";
}

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin || isApi(url)) return;
  if (event.request.mode === "navigate") {
    // The page itself: fresh when online, the cached one when not.
    event.respondWith(fetch(event.request).catch(() => caches.match("/index.html", { cacheName: CACHE })));
    return;
  }
  // Hashed assets never change: the cache answers first.
  event.respondWith(caches.match(event.request, { cacheName: CACHE }).then((hit) => hit || fetch(event.request)));
});
