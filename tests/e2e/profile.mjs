// Where the browser's CPU fallback spends its time (a script, not a test): Chromium's
// sampling profiler over whole-slice encodes (`encode`) or refining clicks (`click`: the same
// point again, its window already encoded) of the engine's wasm on the CPU, as a table of
// wasm functions by self time. The shipped module is wasm-opt'd without function names, so
// this binds the unoptimised module from the last build (target/wasm32-unknown-unknown) again
// beside a copy of the built page, and runs the engine on the page's main thread.
// Usage: node tests/e2e/profile.mjs [REPS=5] [TOP=25] [encode|click]

import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, writeFileSync, copyFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serve } from '../../scripts/serve.mjs';
import { DIST, ROOT, buildInfo, launch, randomModel, synthVolume, writeArtifact } from './harness.mjs';

const [reps = 5, top = 25] = process.argv.slice(2, 4).map(Number);
const what = process.argv[4] ?? 'encode';
if (!['encode', 'click'].includes(what)) throw new Error(`profile encode or click, not ${what}`);
const wasm = join(ROOT, process.env.CARGO_TARGET_DIR || 'target', 'wasm32-unknown-unknown/release/brainsam.wasm');
if (!existsSync(wasm)) throw new Error(`${wasm} not found: run scripts/build_web.sh`);
const dir = mkdtempSync(join(tmpdir(), 'brainsam-profile-'));
cpSync(DIST, dir, { recursive: true });
rmSync(join(dir, 'pkg'), { recursive: true });
execFileSync('wasm-bindgen', ['--target', 'web', '--out-dir', join(dir, 'pkg'), wasm]);
const model = buildInfo().model ? 'weights/brainsam-default.safetensors' : 'random.safetensors';
if (!buildInfo().model) copyFileSync(randomModel(), join(dir, model));
copyFileSync(synthVolume().image, join(dir, 'synth.nii.gz'));
writeFileSync(join(dir, 'profile.html'), `<!doctype html><meta charset="utf-8"><script type="module">
import init, { Engine } from './pkg/brainsam.js';
const bytes = async (url) => new Uint8Array(await (await fetch(url)).arrayBuffer());
window.ready = (async () => {
  await init();
  const engine = await Engine.create('cpu');
  engine.load_model(await bytes('${model}'), undefined);
  engine.load_volume(await bytes('synth.nii.gz'));
  const timed = async (n, f) => {
    const ms = [];
    for (let i = 0; i < n; i++) { const t = performance.now(); await f(i); ms.push(performance.now() - t); }
    return ms;
  };
  window.encode = (n, z0) => timed(n, (i) => engine.encode(2, z0 + i));
  // One point near the middle of slice z0, again and again (the first call encodes its window).
  window.click = (n, z0) => timed(n, () => engine.predict(2, z0, new Float32Array([100, 110, 1]), undefined, undefined, undefined));
})();
</script>`);

const server = await serve(dir, 0);
const browser = await launch({ webgpu: false });
try {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${server.address().port}/profile.html`);
  await page.evaluate(async (what) => { await window.ready; await window[what](2, what === 'click' ? 100 : 90); }, what); // warm
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Profiler.enable');
  await cdp.send('Profiler.setSamplingInterval', { interval: 100 });
  await cdp.send('Profiler.start');
  const ms = await page.evaluate(([what, n]) => window[what](n, 100), [what, reps]);
  const { profile } = await cdp.send('Profiler.stop');
  // The whole sampled tree too, for callers of a hot function (DevTools opens .cpuprofile).
  writeArtifact(`profile-${what}.cpuprofile`, JSON.stringify(profile));
  const nodes = new Map(profile.nodes.map((n) => [n.id, n.callFrame.functionName || '(anonymous)']));
  const self = new Map();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    total += dt;
    self.set(nodes.get(id), (self.get(nodes.get(id)) ?? 0) + dt);
  });
  // Rust symbols end in a hash; crate paths are kept.
  const rows = [...self].sort((a, b) => b[1] - a[1]).slice(0, top)
    .map(([name, t]) => ({ share: t / total, name: name.replace(/::h[0-9a-f]{16}$/, '') }));
  const med = [...ms].sort((a, b) => a - b)[Math.floor(ms.length / 2)];
  const label = what === 'encode' ? 'whole-slice encode' : 'refining click (decoder, window encoded)';
  console.log(`${label} on the CPU (wasm, one thread): median ${med.toFixed(0)} ms (${ms.map(Math.round)})`);
  for (const r of rows) console.log(`${(100 * r.share).toFixed(1).padStart(5)} %  ${r.name.slice(0, 140)}`);
  console.log(`written ${writeArtifact(`profile-${what}.json`, JSON.stringify({ what, ms, rows }, null, 2))}`);
} finally {
  await browser.close();
  server.close();
  rmSync(dir, { recursive: true, force: true });
}
