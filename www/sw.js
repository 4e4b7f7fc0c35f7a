// @ts-check
// Offline use (the MRI never leaves the machine, and the page need not reach one either):
// at install every file of the build is cached; afterwards each request goes to the network
// first, so an online page always gets the current build, and falls back to the cache
// when the server cannot be reached. Only same-origin GETs are handled.
// The page's type check has the DOM's types, not a service worker's: events are untyped.
const sw = /** @type {any} */ (self);
const CACHE = 'brainsam';

sw.addEventListener('install', (/** @type {any} */ e) => {
  e.waitUntil((async () => {
    const build = await fetch('build.json', { cache: 'no-store' }).then((r) => r.json());
    const cache = await caches.open(CACHE);
    await cache.addAll(['./', 'build.json', ...(build.files ?? [])]);
    await sw.skipWaiting();
  })());
});

sw.addEventListener('activate', (/** @type {any} */ e) => e.waitUntil(sw.clients.claim()));

sw.addEventListener('fetch', (/** @type {any} */ e) => {
  const req = e.request;
  if (req.method !== 'GET' || new URL(req.url).origin !== location.origin) return;
  e.respondWith((async () => {
    try {
      const res = await fetch(req);
      if (res.ok && res.type === 'basic') {
        const copy = res.clone();
        e.waitUntil(caches.open(CACHE).then((c) => c.put(req, copy)));
      }
      return res;
    } catch (err) {
      const hit = await caches.match(req, { ignoreSearch: true });
      if (hit) return hit;
      throw err;
    }
  })());
});
