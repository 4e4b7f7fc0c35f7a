// Browser benchmark (a script, not a test): encoder ms per slice and decoder ms per click
// for the model the build ships (else a small random one), on WebGPU (SwiftShader without a
// GPU) and on the CPU fallback. Writes target/e2e/bench.json.
// Usage: node tests/e2e/bench.mjs [SLICES=5] [CLICKS=10] [BACKENDS=webgpu,cpu]

import { buildInfo, launch, openPage, randomModel, startServer, synthVolume, writeArtifact } from './harness.mjs';

const [slices = 5, clicks = 10] = process.argv.slice(2, 4).map(Number);
const backends = (process.argv[4] ?? 'webgpu,cpu').split(',');
const build = buildInfo();
const synth = synthVolume();
const { server, origin } = await startServer();
const results = {};
for (const webgpu of [true, false].filter((g) => backends.includes(g ? 'webgpu' : 'cpu'))) {
  const browser = await launch({ webgpu });
  // WebGPU is forced: "auto" prefers the CPU over a software adapter such as SwiftShader.
  const { page } = await openPage(browser, `${origin}/?sample=0&backend=${webgpu ? 'webgpu' : 'auto'}`);
  if (!build.model) {
    await page.setInputFiles('#file-model', randomModel());
    await page.waitForFunction(() => window.brainsam.state.model, null, { timeout: 600_000 });
  }
  await page.setInputFiles('#file-image', synth.image);
  await page.waitForFunction(() => window.brainsam.state.volume, null, { timeout: 120_000 });
  const r = await page.evaluate(async ([slices, clicks]) => {
    const { engine, state } = window.brainsam;
    engine.worker.postMessage({ op: 'focus', args: null }); // no encoding ahead while timing
    await state.chain;
    const [nx, ny, nz] = state.volume.dims;
    const z0 = Math.floor(nz / 2) + 20; // slices the page has not encoded yet
    const encode = [];
    for (let i = 0; i < slices; i++) encode.push((await engine.call('encode', { axis: 2, index: z0 + i })).ms);
    const decode = [];
    for (let i = 0; i < clicks; i++) {
      const r = await engine.call('predict', { axis: 2, index: z0, points: [[Math.floor(nx / 2) + i, Math.floor(ny / 2), 1]] });
      decode.push(r.decodeMs);
    }
    // The same point again: its window is encoded, so this is a refining click's cost.
    const refine = [];
    const at = [Math.floor(nx / 2), Math.floor(ny / 2), 1];
    for (let i = 0; i < clicks; i++) refine.push((await engine.call('predict', { axis: 2, index: z0, points: [at] })).decodeMs);
    return { backend: state.backend, model: state.model.geometry, warm: state.warm, encode, decode, refine, memory: await engine.call('memory') };
  }, [slices, clicks]);
  results[r.backend] = r;
  await browser.close();
}
server.close();
const med = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
for (const [b, r] of Object.entries(results)) {
  console.log(`${b}: encoder median ${med(r.encode).toFixed(0)} ms/slice (${r.encode.map(Math.round)}), ` +
    `click at a new point (window encoded if the model predicts on windows) first ${r.decode[0].toFixed(0)} ms, median ${med(r.decode).toFixed(0)} ms, tenth ${r.decode.at(-1)?.toFixed(0)} ms, ` +
    `same point again median ${med(r.refine).toFixed(0)} ms` +
    (r.memory ? `, GPU memory reserved ${(r.memory.reserved / 2 ** 20).toFixed(1)} MiB` : ''));
}
console.log(`written ${writeArtifact('bench.json', JSON.stringify({ model: build.model?.name ?? 'random (tests)', results }, null, 2))}`);
