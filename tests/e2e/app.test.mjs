// The browser app in real headless Chromium: WebGPU (SwiftShader on a machine without a
// GPU) and the CPU fallback. Run by scripts/test_e2e.sh after `scripts/build_web.sh`.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import {
  ARTIFACTS, DIST, ROOT, adapterFor, buildInfo, cli, launch, openPage, randomModel, screenshot, settle, startServer,
  niftiDims, synthVolume, writeArtifact,
} from './harness.mjs';

const PUTAMEN = 5; // Left-Putamen in the page's ids (FreeSurfer 12)
// With a trained model, one positive click in the middle of the left putamen on its largest
// axial section must give a slice Dice of at least this. The gate is there to catch a mask in
// the wrong place (a flipped axis, a mis-mapped click) or an untrained model, which score near
// 0; it does not certify quality (that is `brainsam evaluate`'s job: the bundled CPU-trained
// model averages 0.59 with one point per slice on held-out subjects, and single slices spread
// around that, e.g. 0.42 and 0.52 here for two of its training stages).
const TRAINED_MIN_SLICE_DICE = 0.3;
// The page's worker answers in order: a request can wait behind an encode-ahead, which takes
// ~30 s per slice on SwiftShader (more on a loaded machine).
const WORKER_WAIT = { timeout: 300_000 };
const PYTHON = resolve(ROOT, process.env.BRAINSAM_VENV || '.venv', 'bin/python');
const FORMATS = resolve(ROOT, 'tests/e2e/formats.py'); // NRRD and DICOM writers (pynrrd, pydicom)

let synth;
const build = buildInfo(); // what dist/ ships: sample, model, trained or not
const firstClick = {}; // backend → pixels of the first putamen mask
const ctx = {}; // the page the shared steps act on

// The axial slice where `id` is largest, a voxel deep inside it and its bounding box.
async function target(id) {
  return ctx.page.evaluate((id) => {
    const { state } = window.brainsam;
    const ref = state.reference;
    const [nx, ny, nz] = state.volume.dims;
    let best = -1, bestN = 0;
    for (let z = 0; z < nz; z++) {
      let n = 0;
      for (let i = z * nx * ny; i < (z + 1) * nx * ny; i++) n += ref[i] === id;
      if (n > bestN) { best = z; bestN = n; }
    }
    const inside = (x, y) => x >= 0 && y >= 0 && x < nx && y < ny && ref[best * nx * ny + y * nx + x] === id;
    let sx = 0, sy = 0, box = [nx, ny, 0, 0];
    for (let y = 0; y < ny; y++) for (let x = 0; x < nx; x++) if (inside(x, y)) {
      sx += x; sy += y;
      box = [Math.min(box[0], x), Math.min(box[1], y), Math.max(box[2], x), Math.max(box[3], y)];
    }
    const cx = sx / bestN, cy = sy / bestN;
    // Deepest candidates: inside with their whole 5×5 neighbourhood inside, nearest the centroid.
    let pick = null, pickD = Infinity;
    for (let y = 0; y < ny; y++) for (let x = 0; x < nx; x++) {
      let deep = true;
      for (let dy = -2; dy <= 2 && deep; dy++) for (let dx = -2; dx <= 2 && deep; dx++) deep = inside(x + dx, y + dy);
      const d = (x - cx) ** 2 + (y - cy) ** 2;
      if (deep && d < pickD) { pick = [x, y]; pickD = d; }
    }
    return { axis: 2, index: best, area: bestN, u: pick[0], v: pick[1], box };
  }, id);
}

async function goTo(t) {
  await ctx.page.evaluate(({ index, u, v }) => window.brainsam.viewer.setCursor([u, v, index]), t);
}

// Page coordinates of a voxel's centre, rounded: Chromium delivers whole-pixel mouse
// positions, and at ~1.6 screen pixels per voxel a truncated fraction can land next door.
async function clientOf(axis, u, v) {
  const p = await ctx.page.evaluate(([a, x, y]) => window.brainsam.viewer.pixelToClient(a, x, y), [axis, u, v]);
  return { x: Math.round(p.x), y: Math.round(p.y) };
}

async function chooseStructure(id) {
  await ctx.page.selectOption('#structure', String(id));
}

async function errorText(p = ctx.page) {
  return p.evaluate(() => (document.getElementById('error').hidden ? '' : document.getElementById('error-text').textContent));
}

// ---- steps shared by both backends (they act on ctx.page) ----------------------------

async function ensureModel() {
  const page = ctx.page;
  if (build.model) {
    assert.match(await page.textContent('#model-info'), /warm-up/);
    return;
  }
  await page.setInputFiles('#file-model', randomModel());
  await page.waitForFunction(() => window.brainsam.state.model || !document.getElementById('error').hidden, null, { timeout: 900_000 });
  assert.equal(await errorText(), '');
  const warm = await page.evaluate(() => window.brainsam.state.warm);
  console.log(`warm-up (ms): encoder ${warm.encode_ms.map(Math.round)}, decoder ${warm.decode_ms.map(Math.round)}`);
  assert.match(await page.textContent('#model-info'), /128-d × 4, 256 px/);
}

async function uploadSynthetic() {
  const page = ctx.page;
  await page.setInputFiles('#file-image', synth.image);
  await page.waitForFunction(() => document.body.dataset.image === 'image.nii.gz', null, { timeout: 120_000 });
  const dims = niftiDims(synth.image).join('×');
  assert.match(await page.textContent('#image-info'), new RegExp(`${dims} voxels, 1\\.00×1\\.00×1\\.00 mm, LIA`));
  await page.setInputFiles('#file-reference', synth.labels);
  await page.waitForFunction(() => window.brainsam.state.reference, null, WORKER_WAIT);
}

// `gate`: hold the mask to the trained-model threshold (not for a one-step test adapter).
async function clickPutamen(name, { gate = true } = {}) {
  const page = ctx.page;
  await chooseStructure(PUTAMEN);
  const t = await target(PUTAMEN);
  await goTo(t);
  const at = await clientOf(2, t.u, t.v);
  await page.mouse.click(at.x, at.y);
  await settle(page);
  assert.equal(await errorText(), '');
  const s = await page.evaluate(() => {
    const { state } = window.brainsam;
    return { prompt: state.prompt && { ...state.prompt, logits: null }, mask: state.lastMask, dice: state.lastDice };
  });
  // The click reached the model at the voxel under the mouse, on the shown slice.
  assert.deepEqual(s.prompt.points, [[t.u, t.v, 1]]);
  assert.equal(s.prompt.index, t.index);
  assert.equal(s.mask.index, t.index);
  assert.ok(s.dice.slice >= 0 && s.dice.slice <= 1, `slice Dice ${s.dice.slice}`);
  const backend = await page.evaluate(() => window.brainsam.state.backend);
  if (!(backend in firstClick)) firstClick[backend] = s.mask.pixels;
  console.log(`one click (${backend}), slice ${t.index}: ${s.mask.pixels} px, predicted IoU ${s.mask.iou.toFixed(3)}, Dice ${s.dice.slice.toFixed(3)} (truth ${t.area} px)`);
  if (gate && build.model?.trained) assert.ok(s.dice.slice >= TRAINED_MIN_SLICE_DICE, `Dice ${s.dice.slice}`);
  await screenshot(page, name);
}

async function boxPutamen(name) {
  const page = ctx.page;
  await page.click('#clear');
  await settle(page);
  // Scored as the putamen whichever structure an earlier test left chosen.
  await chooseStructure(PUTAMEN);
  await page.click('[data-tool="box"]');
  const t = await target(PUTAMEN);
  await goTo(t);
  const a = await clientOf(2, t.box[0], t.box[3]);
  const b = await clientOf(2, t.box[2], t.box[1]);
  await page.mouse.move(a.x, a.y);
  await page.mouse.down();
  await page.mouse.move((a.x + b.x) / 2, (a.y + b.y) / 2, { steps: 3 });
  await page.mouse.move(b.x, b.y, { steps: 3 });
  await page.mouse.up();
  await settle(page);
  assert.equal(await errorText(), '');
  const s = await page.evaluate(() => ({ box: window.brainsam.state.prompt.box, mask: window.brainsam.state.lastMask, dice: window.brainsam.state.lastDice }));
  assert.deepEqual(s.box, t.box);
  assert.equal(s.mask.index, t.index);
  console.log(`box: ${s.mask.pixels} px, Dice ${s.dice.slice?.toFixed(3)}`);
  if (build.model?.trained) assert.ok(s.dice.slice >= TRAINED_MIN_SLICE_DICE, `Dice ${s.dice.slice}`);
  await screenshot(page, name);
  await page.click('[data-tool="pos"]');
}

async function corruptFile(name) {
  const page = ctx.page;
  const before = await page.textContent('#image-info');
  await page.setInputFiles('#file-image', { name: 'corrupt.nii.gz', mimeType: 'application/gzip', buffer: Buffer.from('this is not a NIfTI file at all') });
  await page.waitForFunction(() => !document.getElementById('error').hidden, null, WORKER_WAIT);
  assert.match(await errorText(), /^image: /);
  await screenshot(page, name);
  const header = readFileSync(synth.image).subarray(0, 4096); // a gzip stream cut short
  await page.click('#error-close');
  await page.setInputFiles('#file-image', { name: 'truncated.nii.gz', mimeType: 'application/gzip', buffer: header });
  await page.waitForFunction(() => !document.getElementById('error').hidden, null, WORKER_WAIT);
  assert.match(await errorText(), /^image: /);
  assert.equal(await page.textContent('#image-info'), before);
  await page.click('#error-close');
  // Still segments the image it had.
  await page.click('#clear');
  const t = await target(PUTAMEN);
  const at = await clientOf(2, t.u, t.v);
  const n = await page.evaluate(() => window.brainsam.state.decodeMs.length);
  await page.mouse.click(at.x, at.y);
  await settle(page);
  assert.equal(await errorText(), '');
  assert.equal(await page.evaluate(() => window.brainsam.state.decodeMs.length), n + 1);
}

// The 3-D view once it shows the latest labels (rendered after `since`): pixels of the putamen's colour (FreeSurfer's
// 236, 13, 176, shaded), counted by PIL in a screenshot of the view's canvas.
async function putamenIn3d(since, name) {
  const page = ctx.page;
  await page.waitForFunction((t) => {
    const { render3d, state } = window.brainsam;
    return (render3d.shownAt > t && render3d.shownAt >= state.changedAt) || render3d.failed;
  }, since, WORKER_WAIT);
  assert.equal(await page.evaluate(() => window.brainsam.render3d.failed), '');
  await new Promise((r) => setTimeout(r, 500)); // the frame after the upload
  const png = join(ARTIFACTS, 'screenshots', `${name}.png`);
  await page.locator('#render3d').screenshot({ path: png });
  return Number(execFileSync(PYTHON, ['-c', `
import sys, numpy as np
from PIL import Image
p = np.asarray(Image.open(sys.argv[1]).convert("RGB")).astype(int)
r, g, b = p[..., 0], p[..., 1], p[..., 2]
print(int(((r > g + 60) & (b > g + 40) & (r > b)).sum()))`, png], { encoding: 'utf8' }));
}

// niivue's drawing of the labels in the plane of `axis`, checked against the page's labels on
// the shown slice: of the screen pixels at the centres of the inner voxels of `id`, the share drawn
// as its colour blended over grey at the page's opacity (what is left after taking out the
// colour's part is grey: three equal channels); of those at unlabelled voxels 2–3 voxels
// away from it, the share that is. A mask drawn mirrored, shifted or on another slice fails
// one or the other. Voxels under the crosshair or a prompt's mark are left out. Counted by
// numpy in a screenshot of the planes.
async function maskInPlane(axis, id, name) {
  const page = ctx.page;
  const pts = await page.evaluate(([axis, id]) => {
    const { state, viewer } = window.brainsam;
    const d = state.volume.dims, index = viewer.cursor[axis];
    const [ua, va] = [[1, 2], [0, 2], [0, 1]][axis];
    const strides = [1, d[0], d[0] * d[1]];
    const at = (u, v) => (u < 0 || v < 0 || u >= d[ua] || v >= d[va] ? 0 : state.labels[index * strides[axis] + u * strides[ua] + v * strides[va]]);
    // WebGL draws tiles on whole pixels, niivue places them to a fraction of one: edge
    // voxels may shift by up to a pixel, so only voxels whose 8 neighbours share the label count.
    const interior = (u, v) => { for (let dv = -1; dv <= 1; dv++) for (let du = -1; du <= 1; du++) if (at(u + du, v + dv) !== id) return false; return true; };
    const near = (u, v, r) => { for (let dv = -r; dv <= r; dv++) for (let du = -r; du <= r; du++) if (at(u + du, v + dv) === id) return true; return false; };
    // Not where the crosshair or a prompt's mark is drawn over the labels.
    const marks = state.prompt && state.prompt.axis === axis && state.prompt.index === index ? state.prompt.points : [];
    const covered = (u, v) => Math.abs(u - viewer.cursor[ua]) <= 1 || Math.abs(v - viewer.cursor[va]) <= 1
      || marks.some(([pu, pv]) => Math.hypot(pu - u, pv - v) <= 5);
    const inside = [], outside = [];
    for (let v = 0; v < d[va]; v++) for (let u = 0; u < d[ua]; u++) {
      if (covered(u, v)) continue;
      if (interior(u, v)) inside.push([u, v]);
      else if (at(u, v) === 0 && near(u, v, 3) && !near(u, v, 1)) outside.push([u, v]);
    }
    const r = document.getElementById('planes').getBoundingClientRect();
    const px = ([u, v]) => { const c = viewer.pixelToClient(axis, u, v); return [Math.floor(c.x - r.left), Math.floor(c.y - r.top)]; };
    const rgb = state.structures.find((t) => t.id === id).rgb;
    return { inside: inside.map(px), outside: outside.map(px), rgb, opacity: viewer.opacity };
  }, [axis, id]);
  assert.ok(pts.inside.length > 0, `no voxels of ${id} on the shown slice of axis ${axis}`);
  const png = join(ARTIFACTS, 'screenshots', `${name}.png`);
  await page.locator('#planes').screenshot({ path: png });
  writeArtifact(`screenshots/${name}.json`, JSON.stringify(pts));
  const out = JSON.parse(execFileSync(PYTHON, ['-c', `
import json, sys, numpy as np
from PIL import Image
p = np.asarray(Image.open(sys.argv[1]).convert("RGB")).astype(int)
pts = json.load(sys.stdin)
def share(q):
    q = np.array(q).reshape(-1, 2)
    q = q[(q[:, 0] >= 0) & (q[:, 1] >= 0) & (q[:, 0] < p.shape[1]) & (q[:, 1] < p.shape[0])]
    grey = p[q[:, 1], q[:, 0]] - pts["opacity"] * np.array(pts["rgb"])
    return float(((grey.max(1) - grey.min(1) <= 12) & (grey.min(1) >= -6)).mean()) if len(q) else 0.0
print(json.dumps({"inside": share(pts["inside"]), "outside": share(pts["outside"])}))`, png], { input: JSON.stringify(pts), encoding: 'utf8' }));
  console.log(`${name}: ${pts.inside.length} voxels of ${id} drawn ${(100 * out.inside).toFixed(1)} % in its colour, ${pts.outside.length} around it ${(100 * out.outside).toFixed(1)} %`);
  assert.ok(out.inside >= 0.95, `${name}: only ${(100 * out.inside).toFixed(1)} % of the mask's voxels drawn in its colour`);
  assert.ok(out.outside <= 0.05, `${name}: ${(100 * out.outside).toFixed(1)} % of the voxels around the mask drawn in its colour`);
}

function assertSameOrigin(log, origin) {
  const foreign = log.requests.filter((u) => !u.startsWith(`${origin}/`) && !u.startsWith('blob:') && !u.startsWith('data:'));
  assert.deepEqual(foreign, []);
}

// ---- WebGPU --------------------------------------------------------------------------------

describe('brainsam in Chromium on WebGPU', () => {
  let server, origin, browser, log;
  before(async () => {
    synth = synthVolume();
    ({ server, origin } = await startServer());
    browser = await launch({ webgpu: true });
    // Forced: "auto" prefers the CPU over a software adapter such as SwiftShader.
    ({ page: ctx.page, log } = await openPage(browser, `${origin}/?backend=webgpu`));
  });
  after(async () => {
    writeArtifact('webgpu-console.log', log?.console.join('\n') ?? '');
    await browser?.close();
    server?.close();
  });

  test('page loads and reports its backend', async () => {
    const page = ctx.page;
    assert.equal(await page.getAttribute('body', 'data-state'), 'ready', await errorText());
    assert.equal((await page.textContent('#backend')).trim(), 'WebGPU');
    const structures = await page.$$eval('#structure option', (os) => os.map((o) => o.textContent));
    assert.equal(structures.length, 16);
    assert.ok(structures.includes('■ Left-Putamen'));
    if (build.sample) assert.match(await page.textContent('#image-info'), /197×233×189/);
    if (!build.model) assert.match(await page.textContent('#notice'), /No trained model is bundled/);
    await screenshot(page, '01-loaded');
    assert.deepEqual(log.errors, []);
  });

  test('the model loads and warms up', ensureModel);

  test('a synthetic volume uploads with its reference labels; the wheel moves one slice', async () => {
    await uploadSynthetic();
    const page = ctx.page;
    const z0 = await page.evaluate(() => window.brainsam.viewer.cursor[2]);
    const box = await page.locator('.view[data-axis="2"]').boundingBox();
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await page.mouse.wheel(0, -100);
    assert.equal(await page.evaluate(() => window.brainsam.viewer.cursor[2]), z0 + 1);
    await screenshot(page, '02-synthetic');
  });

  test('a positive click inside the left putamen gives a mask scored against the truth', () => clickPutamen('03-click-webgpu'));

  test('nine more clicks refine the mask; first and tenth click times are reported', async () => {
    const page = ctx.page;
    const t = await target(PUTAMEN);
    const offsets = [[1, 0], [-1, 0], [0, 1], [0, -1], [1, 1], [-1, -1], [1, -1], [-1, 1], [0, 0]];
    for (const [i, [dx, dy]] of offsets.entries()) {
      const at = await clientOf(2, t.u + dx, t.v + dy);
      if (i === 4) await page.keyboard.down('Shift');
      await page.mouse.click(at.x, at.y);
      if (i === 4) await page.keyboard.up('Shift');
      await settle(page);
    }
    const s = await page.evaluate(() => ({ ms: window.brainsam.state.decodeMs, points: window.brainsam.state.prompt.points }));
    assert.equal(s.points.length, 10);
    assert.equal(s.points[5][2], 0, 'Shift-click is a negative point');
    console.log(`decoder ms per click (1..10 points): ${s.ms.map(Math.round).join(', ')}`);
    // Undo drops the last point and restores the mask it replaced.
    await page.click('#undo');
    await settle(page);
    assert.equal(await page.evaluate(() => window.brainsam.state.prompt.points.length), 9);
  });

  test('slices next to the shown one are encoded ahead while the user is idle', async () => {
    const page = ctx.page;
    const t = await target(PUTAMEN);
    if (await page.evaluate(() => Boolean(window.brainsam.state.model?.focus))) {
      // A model that predicts on windows around prompts never uses a whole slice's
      // encoding: the worker must not spend the user's idle time on one.
      await page.waitForTimeout(5_000);
      assert.deepEqual(await page.evaluate(() => window.brainsam.state.encodedAhead), []);
      return;
    }
    await page.waitForFunction((z) => ['2:' + (z + 1), '2:' + (z - 1)].every((k) => window.brainsam.state.encodedAhead.includes(k)),
      t.index, { timeout: 600_000 });
    // A click on a neighbour then needs no encoder pass.
    await goTo({ ...t, index: t.index + 1 });
    const at = await clientOf(2, t.u, t.v);
    await page.mouse.click(at.x, at.y);
    await settle(page);
    const m = await page.evaluate(() => window.brainsam.state.lastMask);
    assert.equal(m.index, t.index + 1);
    assert.equal(m.encodeMs, null, 'the slice was encoded for the click, not ahead of it');
    await page.click('#undo');
    await settle(page);
  });

  test('a box around the putamen gives a mask', () => boxPutamen('04-box-webgpu'));

  test('a corrupt file shows an error and the page stays usable', async () => {
    await corruptFile('06-corrupt');
    assert.deepEqual(log.errors, []);
  });

  test('no request leaves the page origin', async () => {
    assertSameOrigin(log, origin);
    const memory = await ctx.page.evaluate(() => window.brainsam.state.memory);
    console.log(`requests: ${log.requests.length}, all same-origin; GPU memory ${JSON.stringify(memory)}`);
  });
});

// ---- CPU fallback ----------------------------------------------------------------------------
// 3-D propagation and export run here: they are the same engine calls as above, repeated
// per slice, and SwiftShader takes ~30 s per slice for the trained model's encoder.

// What `npm start` shows: the bundled MNI152 template, one click in the left putamen.
async function clickSamplePutamen(name) {
  const page = ctx.page;
  // MNI (-25, 2, 0) mm lies in the left putamen; the template is stored RAS, so its
  // voxels are the page's canonical ones.
  const [x, y, z] = JSON.parse(execFileSync(PYTHON, ['-c', `
import json, sys, nibabel as nib, numpy as np
a = nib.load(sys.argv[1]).affine
print(json.dumps([int(round(v)) for v in np.linalg.solve(a, [-25, 2, 0, 1])[:3]]))`, join(DIST, build.sample.url)], { encoding: 'utf8' }));
  await chooseStructure(PUTAMEN);
  await goTo({ index: z, u: x, v: y });
  const at = await clientOf(2, x, y);
  await page.mouse.click(at.x, at.y);
  await settle(page);
  assert.equal(await errorText(), '');
  const m = await page.evaluate(() => window.brainsam.state.lastMask);
  console.log(`sample, voxel ${[x, y, z]}: ${m.pixels} px, predicted IoU ${m.iou.toFixed(3)}`);
  await screenshot(page, name);
  await maskInPlane(2, PUTAMEN, `${name}-axial`);
  // The putamen's axial section at z = 0 is ~4 cm²: a trained model's mask is of that order.
  if (build.model?.trained) assert.ok(m.pixels >= 100 && m.pixels <= 1500, `${m.pixels} px`);
}

describe('brainsam in Chromium without WebGPU', () => {
  let server, origin, browser, log, empty3d;
  before(async () => {
    synth = synthVolume();
    ({ server, origin } = await startServer());
    browser = await launch({ webgpu: false });
    ({ page: ctx.page, log } = await openPage(browser, `${origin}/`));
  });
  after(async () => {
    writeArtifact('cpu-console.log', log?.console.join('\n') ?? '');
    await browser?.close();
    server?.close();
  });

  test('falls back to the CPU with a notice', async () => {
    const page = ctx.page;
    assert.equal((await page.textContent('#backend')).trim(), 'CPU (wasm)');
    assert.match(await page.textContent('#notice'), /Running on the CPU in WebAssembly \(no WebGPU adapter\)/);
    await ensureModel();
    assert.match(await page.textContent('#notice'), /Running on the CPU/, 'the notice stays after a model loads');
  });

  test('the bundled sample: one click in the left putamen', { skip: !build.sample && 'no sample in this build' }, async () => {
    const opened = await ctx.page.evaluate(() => Date.now() - 600_000); // the sample opened at start
    empty3d = await putamenIn3d(opened, '00-sample-3d-empty');
    await clickSamplePutamen('00-sample-click');
  });

  test('the bundled sample: the left putamen in 3-D, in the planes and the 3-D view', { skip: !build.sample && 'no sample in this build' }, async () => {
    const page = ctx.page;
    await page.click('#propagate');
    await page.waitForFunction(() => window.brainsam.state.lastPropagation, null, { timeout: 900_000 });
    await settle(page);
    assert.equal(await errorText(), '');
    const p = await page.evaluate(() => {
      const { state } = window.brainsam;
      return { ...state.lastPropagation, mm3: state.lastPropagation.voxels * state.volume.spacing.reduce((a, b) => a * b, 1) };
    });
    const shown = await putamenIn3d(0, '00-sample-3d-view');
    await screenshot(page, '00-sample-3d');
    for (const [axis, plane] of [[2, 'axial'], [1, 'coronal'], [0, 'sagittal']]) await maskInPlane(axis, PUTAMEN, `00-sample-3d-${plane}`);
    // Reported, not gated: a left putamen is typically 4–6 cm³.
    console.log(`sample, left putamen in 3-D: ${p.voxels} voxels = ${(p.mm3 / 1000).toFixed(2)} cm³, slices ${p.from}..${p.to}, stops ${p.ends}; 3-D view ${shown} putamen pixels (${empty3d} before)`);
    assert.ok(shown >= empty3d + 300, `3-D view: ${shown} putamen pixels, ${empty3d} before`);
    assert.match(await page.textContent('#mask-info'), /voxels in 3D \([\d.]+ (cm³|mm³)\)/);
  });

  test('a click and a box on the CPU', async () => {
    const opened = await ctx.page.evaluate(() => Date.now());
    await uploadSynthetic();
    empty3d = await putamenIn3d(opened, '03-3d-empty');
    await clickPutamen('03-click-cpu');
    const s = await ctx.page.evaluate(() => ({ enc: window.brainsam.state.encodeMs, dec: window.brainsam.state.decodeMs }));
    // A windowed model encodes the window inside the click's request: no slice encoder time.
    console.log(s.enc.length
      ? `CPU fallback: encoder ${Math.round(s.enc.at(-1))} ms, decoder ${Math.round(s.dec.at(-1))} ms`
      : `CPU fallback: window encoder + decoder ${Math.round(s.dec.at(-1))} ms per new window`);
    // Same model, image and click as on WebGPU: the masks agree (0.5 % for pixels whose
    // logits sit at the threshold, where float rounding differs between backends).
    if ('webgpu' in firstClick) {
      const [g, c] = [firstClick.webgpu, firstClick.cpu];
      assert.ok(Math.abs(g - c) <= 0.005 * Math.max(g, c), `WebGPU mask ${g} px, CPU ${c} px`);
    }
    await boxPutamen('04-box-cpu');
  });

  test('the whole structure extends to 3D', async () => {
    const page = ctx.page;
    const seedPixels = await page.evaluate(() => window.brainsam.state.lastMask.pixels);
    assert.ok(seedPixels > 0, 'the box gave an empty seed mask');
    await page.click('#propagate');
    await page.waitForFunction(() => window.brainsam.state.lastPropagation, null, { timeout: 900_000 });
    await settle(page);
    assert.equal(await errorText(), '');
    const s = await page.evaluate(() => ({ p: window.brainsam.state.lastPropagation, dice: window.brainsam.state.lastDice }));
    assert.ok(s.p.voxels >= seedPixels, `3D mask has ${s.p.voxels} voxels, fewer than its seed slice`);
    // Each direction names the slice it ended on and why, and the page says so.
    const codes = ['vanished', 'iou', 'jump', 'seed-area', 'swell', 'tissue', 'extent', 'across', 'edge'];
    assert.ok(s.p.ends.length === 2 && s.p.ends.every((c) => codes.includes(c)), `stop reasons ${s.p.ends}`);
    assert.ok(s.p.from <= s.p.to, `3D slice range ${s.p.from}..${s.p.to}`);
    assert.match(await page.textContent('#mask-info'), new RegExp(`stopped at ${s.p.to + 1}: .+; at ${s.p.from + 1}: .+`));
    console.log(`3D: ${s.p.voxels} voxels in ${Math.round(s.p.ms)} ms, Dice ${s.dice.volume?.toFixed(3)}, slices ${s.p.from}..${s.p.to}, stops ${s.p.ends}`);
    await screenshot(page, '05-3d');
    // The 3-D view (niivue) shows the structure: putamen-coloured pixels where there were none.
    const shown = await putamenIn3d(0, '05-3d-view');
    console.log(`3-D view: ${shown} putamen-coloured pixels (${empty3d} before any mask)`);
    assert.ok(shown >= empty3d + 300, `3-D view: ${shown} putamen pixels, ${empty3d} before`);
    // A regression gate on the stop rules, not a quality target: with the first release's
    // rules the same box leaked into the brainstem and neck (48 579 voxels, Dice 0.149);
    // with the current ones it stays in the putamen (15 340, 0.359). Held-out 3-D Dice is
    // measured by `brainsam evaluate --prompt propagate`.
    if (build.model?.trained) assert.ok(s.dice.volume >= 0.25, `3D Dice ${s.dice.volume}`);
  });

  test('export re-reads with the crate and nibabel: same dims and affine as the input', async () => {
    const page = ctx.page;
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export')]);
    const path = join(ARTIFACTS, 'export.nii.gz');
    await download.saveAs(path);
    // The crate's reader: metrics refuses a prediction whose dims or affine differ.
    const out = cli('metrics', '--pred', path, '--truth', synth.labels, '--csv', join(ARTIFACTS, 'export-metrics.csv'),
      '--json', join(ARTIFACTS, 'export-metrics.json'));
    const report = JSON.parse(readFileSync(join(ARTIFACTS, 'export-metrics.json'), 'utf8'));
    const row = report.structures.find((r) => r.id === PUTAMEN);
    const pageDice = await page.evaluate(() => window.brainsam.state.lastDice.volume);
    // The page scores in canonical order, the CLI in the file's: equal only if the export
    // put every voxel back where it came from.
    assert.ok(Math.abs(row.dice - pageDice) < 1e-9, `CLI Dice ${row.dice}, page ${pageDice}\n${out}`);
    // One Dice rule on both sides (the crate's data::metrics::dice, util.js's dice): each of
    // the 16 structures of the export against the truth, and the export against itself,
    // where the structures never segmented are empty in both: null on both sides, not 1.
    const page16 = await page.evaluate(() => {
      const { state, dice } = window.brainsam;
      return Array.from({ length: 16 }, (_, i) => i + 1)
        .map((id) => [id, dice(state.labels, state.reference, id), dice(state.labels, state.labels, id)]);
    });
    cli('metrics', '--pred', path, '--truth', path, '--csv', join(ARTIFACTS, 'export-self-metrics.csv'),
      '--json', join(ARTIFACTS, 'export-self-metrics.json'));
    const itself = JSON.parse(readFileSync(join(ARTIFACTS, 'export-self-metrics.json'), 'utf8'));
    for (const [id, vsTruth, vsSelf] of page16) {
      const t = report.structures.find((r) => r.id === id).dice;
      const s = itself.structures.find((r) => r.id === id).dice;
      assert.ok(t === null ? vsTruth === null : Math.abs(t - vsTruth) < 1e-9, `structure ${id}: CLI ${t}, page ${vsTruth}`);
      assert.equal(vsSelf, s, `structure ${id} against itself: CLI ${s}, page ${vsSelf}`);
    }
    assert.ok(page16.some(([, , s]) => s === null), 'a structure empty in both');
    // An independent reader.
    const nib = JSON.parse(execFileSync(PYTHON, ['-c', `
import json, sys, nibabel as nib, numpy as np
a, b = nib.load(sys.argv[1]), nib.load(sys.argv[2])
print(json.dumps({"shape": [a.shape, b.shape], "affine_diff": float(np.abs(a.affine - b.affine).max()),
  "labels": sorted(int(v) for v in np.unique(np.asarray(a.dataobj)))}))`, path, synth.image], { encoding: 'utf8' }));
    assert.deepEqual(nib.shape[0], nib.shape[1]);
    assert.ok(nib.affine_diff < 1e-5, `affines differ by ${nib.affine_diff}`);
    assert.deepEqual(nib.labels, [0, 12], 'FreeSurfer value of the left putamen');
  });

  test('the volumes CSV counts the exported labels and the colour table names their values', async () => {
    const page = ctx.page;
    const save = async (button, name) => {
      const [download] = await Promise.all([page.waitForEvent('download'), page.click(button)]);
      const path = join(ARTIFACTS, name);
      await download.saveAs(path);
      return readFileSync(path, 'utf8');
    };
    const csv = await save('#export-volumes', 'volumes.csv');
    const lut = await save('#export-lut', 'lut.txt');
    // nibabel counts the file the export test saved (FreeSurfer values, the default).
    const nib = JSON.parse(execFileSync(PYTHON, ['-c', `
import json, sys, nibabel as nib, numpy as np
img = nib.load(sys.argv[1])
v, c = np.unique(np.asarray(img.dataobj).astype(int), return_counts=True)
print(json.dumps({"counts": {int(a): int(b) for a, b in zip(v, c)}, "voxel_mm3": float(np.prod(img.header.get_zooms()[:3]))}))`, join(ARTIFACTS, 'export.nii.gz')], { encoding: 'utf8' }));
    const [head, ...rows] = csv.trim().split('\n').map((l) => l.split(','));
    assert.deepEqual(head, ['structure', 'label', 'voxels', 'volume_mm3']);
    assert.ok(rows.length >= 16, `${rows.length} rows`);
    for (const [name, label, voxels, mm3] of rows) {
      assert.equal(Number(voxels), nib.counts[label] ?? 0, `${name} (${label})`);
      assert.ok(Math.abs(Number(mm3) - Number(voxels) * nib.voxel_mm3) <= 1e-3, `${name}: ${mm3} mm³`);
    }
    assert.ok(rows.some((r) => Number(r[2]) > 0), 'no structure has voxels');
    const values = new Set(lut.split('\n').filter((l) => l.trim() && !l.startsWith('#')).map((l) => Number(l.trim().split(/\s+/)[0])));
    for (const v of Object.keys(nib.counts)) assert.ok(values.has(Number(v)), `label ${v} missing from the colour table`);
    console.log(`volumes: ${rows.filter((r) => Number(r[2]) > 0).map((r) => `${r[0]} ${r[3]} mm³`).join(', ')}`);
  });

  test('mirror averaging is offered for a windowed model and predicts on both views', async () => {
    const page = ctx.page;
    const windowed = await page.evaluate(() => Boolean(window.brainsam.state.model?.focus));
    assert.equal(await page.isHidden('#flip-average-row'), !windowed);
    if (!windowed) return;
    await page.check('#flip-average');
    await page.click('#clear');
    await settle(page);
    await clickPutamen('06-click-mirror-cpu');
    assert.equal(await page.evaluate(() => window.brainsam.state.lastMask.flipAverage), true);
    await page.uncheck('#flip-average');
    await settle(page);
  });

  test('an adapter file loads onto the model and changes its masks', async () => {
    const page = ctx.page;
    const base = build.model ? join(DIST, build.model.url) : randomModel();
    await page.click('#clear');
    await clickPutamen('03-click-cpu');
    const before = await page.evaluate(() => window.brainsam.state.lastMask);
    await page.setInputFiles('#file-adapter', adapterFor(base));
    await page.waitForFunction(() => window.brainsam.state.model?.adapter, null, { timeout: 600_000 });
    assert.match(await page.textContent('#model-info'), /\+ LoRA adapter \(rank 4\)/);
    assert.doesNotMatch(await page.textContent('#notice'), /another base model/);
    // The same click: the trained decoder answers differently.
    await page.click('#clear');
    await clickPutamen('08-adapter', { gate: false });
    const after = await page.evaluate(() => window.brainsam.state.lastMask);
    assert.notEqual(after.iou, before.iou);
  });

  test('an MGZ of the synthetic image opens in the same grid and segments', async () => {
    const page = ctx.page;
    // FreeSurfer's format, written by nibabel (an independent writer) from the NIfTI.
    const mgz = join(ARTIFACTS, 'image.mgz');
    execFileSync(PYTHON, ['-c', `
import sys, nibabel as nib, numpy as np
img = nib.load(sys.argv[1])
nib.save(nib.MGHImage(np.asarray(img.dataobj, dtype=np.float32), img.affine), sys.argv[2])`, synth.image, mgz]);
    await page.setInputFiles('#file-image', mgz);
    await page.waitForFunction(() => document.body.dataset.image === 'image.mgz' || !document.getElementById('error').hidden, null, { timeout: 120_000 });
    assert.equal(await errorText(), '');
    const dims = niftiDims(synth.image).join('×');
    assert.match(await page.textContent('#image-info'), new RegExp(`${dims} voxels, 1\\.00×1\\.00×1\\.00 mm, LIA`));
    await page.setInputFiles('#file-reference', synth.labels);
    await page.waitForFunction(() => window.brainsam.state.reference, null, WORKER_WAIT);
    await clickPutamen('09-click-mgz');
  });

  test('brush, fill and eraser correct a mask by hand, in one undo history with the model', async () => {
    const page = ctx.page;
    const THALAMUS = 1; // painted away from the putamen masks of the steps above
    // Keys go to the page, not to the last form control used.
    const blur = () => page.evaluate(() => /** @type {HTMLElement} */ (document.activeElement)?.blur());
    await chooseStructure(THALAMUS);
    await blur();
    const t = await target(PUTAMEN);
    await goTo(t);
    const at = (u, v) => clientOf(2, u, v);
    const plane = () => page.evaluate((z) => {
      const { state } = window.brainsam;
      const [nx, ny] = state.volume.dims;
      return Array.from(state.labels.subarray(z * nx * ny, (z + 1) * nx * ny));
    }, t.index);
    const all = () => page.evaluate(() => Array.from(window.brainsam.state.labels));
    const history = () => page.evaluate(() => window.brainsam.state.history.length);
    const nx = await page.evaluate(() => window.brainsam.state.volume.dims[0]);
    const px = (p, u, v) => p[v * nx + u];
    const start = { labels: await all(), history: await history() };
    // A square ring, 12 px a side, one stroke of a 1-px brush (3 px wide) around the
    // putamen's centre.
    const [u0, v0, side] = [t.u - 6, t.v - 6, 12];
    await page.keyboard.press('5');
    await page.locator('#brush-size').fill('1');
    await blur();
    const corners = [[u0, v0], [u0 + side, v0], [u0 + side, v0 + side], [u0, v0 + side], [u0, v0]];
    const first = await at(...corners[0]);
    await page.mouse.move(first.x, first.y);
    await page.mouse.down();
    for (const c of corners.slice(1)) {
      const q = await at(...c);
      await page.mouse.move(q.x, q.y, { steps: 12 });
    }
    await page.mouse.up();
    let p = await plane();
    for (let k = 0; k <= side; k++) {
      for (const [u, v] of [[u0 + k, v0], [u0 + k, v0 + side], [u0, v0 + k], [u0 + side, v0 + k]]) {
        assert.equal(px(p, u, v), THALAMUS, `ring pixel (${u}, ${v})`);
      }
    }
    assert.notEqual(px(p, t.u, t.v), THALAMUS, 'the ring is open inside before the fill');
    assert.equal(await history(), start.history + 1, 'one stroke, one undo step');
    // Fill inside the ring: every pixel of the square becomes the structure.
    await page.keyboard.press('7');
    const mid = await at(t.u, t.v);
    await page.mouse.click(mid.x, mid.y);
    await settle(page);
    assert.equal(await errorText(), '');
    p = await plane();
    for (let v = v0; v <= v0 + side; v++) for (let u = u0; u <= u0 + side; u++) assert.equal(px(p, u, v), THALAMUS, `filled (${u}, ${v})`);
    await screenshot(page, '11-hand-fill');
    await maskInPlane(2, THALAMUS, '11-hand-fill-axial');
    // A fill where nothing encloses the click is refused with a reason, and changes nothing.
    const open = await at(2, 2);
    await page.mouse.click(open.x, open.y);
    await settle(page);
    assert.match(await errorText(), /not closed/);
    await page.click('#error-close');
    assert.deepEqual(await plane(), p);
    // The eraser, one pixel wide, across the middle row: those pixels lose the structure;
    // a pixel of another structure it passes keeps its label.
    await page.keyboard.press('6');
    await page.locator('#brush-size').fill('0');
    await blur();
    const [a, b] = [await at(u0 - 3, t.v), await at(u0 + side + 3, t.v)];
    await page.mouse.move(a.x, a.y);
    await page.mouse.down();
    await page.mouse.move(b.x, b.y, { steps: 30 });
    await page.mouse.up();
    const erased = await plane();
    for (let u = u0 - 3; u <= u0 + side + 3; u++) {
      const was = px(p, u, t.v);
      assert.equal(px(erased, u, t.v), was === THALAMUS ? 0 : was, `erased (${u}, ${t.v})`);
    }
    assert.equal(px(erased, t.u, t.v - 1), THALAMUS, 'the row above is untouched');
    await screenshot(page, '12-hand-erase');
    assert.equal(await history(), start.history + 3);
    // The work survives a reload: the page asks before leaving it, then offers it back.
    await page.waitForFunction(() => {
      const { state } = window.brainsam;
      return state.changedAt > 0 && state.savedAt >= state.changedAt;
    }, null, WORKER_WAIT);
    assert.match(await page.textContent('#autosave-info'), /Saved in this browser at .+ not exported yet/);
    const leaving = await page.evaluate(() => {
      const e = new Event('beforeunload', { cancelable: true });
      dispatchEvent(e);
      return e.defaultPrevented;
    });
    assert.ok(leaving, 'closing with unexported edits does not ask first');
    const edited = await all();
    page.once('dialog', (d) => d.accept());
    await page.reload();
    await page.waitForFunction(() => !document.getElementById('restore').hidden, null, { timeout: 600_000 });
    assert.match(await page.textContent('#restore-text'), /image\.mgz, \d+ labelled voxels/);
    await page.waitForFunction(() => document.body.dataset.state === 'ready', null, { timeout: 600_000 });
    await page.click('#restore-yes');
    await page.waitForFunction(() => document.body.dataset.restored || !document.getElementById('error').hidden, null, { timeout: 600_000 });
    await settle(page);
    assert.equal(await errorText(), '');
    assert.equal(await page.evaluate(() => document.body.dataset.image), 'image.mgz');
    assert.deepEqual(await all(), edited, 'the restored labels are the edited ones');
    assert.equal(await history(), start.history + 3, 'the undo history is restored with them');
    // The view opens where the work was: the edited slice, in the axial view.
    const view = await page.evaluate(() => ({ cursor: window.brainsam.viewer.cursor, axis: window.brainsam.viewer.active.axis }));
    assert.equal(view.cursor[2], t.index, `restored view at axial slice ${view.cursor[2]}, the edits are on ${t.index}`);
    assert.equal(view.axis, 2);
    await screenshot(page, '13-restored');
    // Undo, after the reload: eraser, fill, stroke, then the model's edits before them.
    for (let k = 0; k < 3; k++) {
      await page.keyboard.press('Control+z');
      await settle(page);
    }
    assert.deepEqual(await all(), start.labels, 'three undos restore the labels before the hand edits');
    await page.keyboard.press('Control+z');
    await settle(page);
    assert.notDeepEqual(await all(), start.labels, 'the next undo takes back the model\'s last edit');
  });

  test('the help overlay lists the keys and closes with Escape', async () => {
    const page = ctx.page;
    await page.keyboard.press('?');
    assert.ok(await page.isVisible('#help-overlay'));
    assert.match(await page.textContent('#help-overlay'), /brush.+eraser/s);
    await screenshot(page, '14-help');
    await page.keyboard.press('Escape');
    assert.ok(!(await page.isVisible('#help-overlay')));
  });

  test('an NRRD and a DICOM series of the synthetic image open in its grid, segment and export', async () => {
    const page = ctx.page;
    const opened = (name) => page.waitForFunction((n) => document.body.dataset.image === n || !document.getElementById('error').hidden, name, { timeout: 300_000 });
    const dims = niftiDims(synth.image).join('×');
    const reference = async () => {
      await page.setInputFiles('#file-reference', synth.labels);
      await page.waitForFunction(() => window.brainsam.state.reference, null, WORKER_WAIT);
    };
    // NRRD as 3D Slicer writes it (LPS space directions, gzip), by pynrrd.
    const nrrd = join(ARTIFACTS, 'image.nrrd');
    execFileSync(PYTHON, [FORMATS, 'nrrd', synth.image, nrrd]);
    await page.setInputFiles('#file-image', nrrd);
    await opened('image.nrrd');
    assert.equal(await errorText(), '');
    assert.match(await page.textContent('#image-info'), new RegExp(`${dims} voxels, 1\\.00×1\\.00×1\\.00 mm, LIA`));
    const canonical = await page.evaluate(() => window.brainsam.state.volume.dims);
    await reference();
    await clickPutamen('15-click-nrrd');
    // A DICOM series (one MR slice per file, by pydicom), chosen as a folder: dcm2niix in the
    // page converts it. The reference labels fit only if the world grid is the same.
    const dir = join(ARTIFACTS, 'dicom');
    rmSync(dir, { recursive: true, force: true });
    execFileSync(PYTHON, [FORMATS, 'dicom', synth.image, dir]);
    const files = readdirSync(dir).length;
    await page.setInputFiles('#file-dicom', dir);
    await page.waitForFunction(() => /\.nii$/.test(document.body.dataset.image ?? '') || !document.getElementById('error').hidden, null, { timeout: 300_000 });
    assert.equal(await errorText(), '');
    console.log(`DICOM: ${files} files → ${await page.evaluate(() => document.body.dataset.image)}`);
    assert.deepEqual(await page.evaluate(() => window.brainsam.state.volume.dims), canonical);
    await reference();
    await clickPutamen('16-click-dicom');
    // The export lies on the series' world grid (nibabel, any axis order) and holds the mask.
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export')]);
    const path = join(ARTIFACTS, 'export-dicom.nii.gz');
    await download.saveAs(path);
    const grid = JSON.parse(execFileSync(PYTHON, [FORMATS, 'same-grid', synth.image, path], { encoding: 'utf8' }));
    assert.deepEqual(grid.shapes[0], grid.shapes[1]);
    assert.ok(grid.affine_diff < 1e-3, `export affine differs from the series' by ${grid.affine_diff}`);
    const labelled = Number(execFileSync(PYTHON, ['-c', `
import sys, nibabel as nib, numpy as np
print(int((np.asarray(nib.load(sys.argv[1]).dataobj) != 0).sum()))`, path], { encoding: 'utf8' }));
    const pageCount = await page.evaluate(() => window.brainsam.state.labels.reduce((a, l) => a + Number(l !== 0), 0));
    assert.equal(labelled, pageCount);
    // Files that are not DICOM are refused with a reason, and the open image stays.
    await page.setInputFiles('#file-image', [
      { name: 'a.txt', mimeType: 'text/plain', buffer: Buffer.from('not an image') },
      { name: 'b.txt', mimeType: 'text/plain', buffer: Buffer.from('nor this') }]);
    await page.waitForFunction(() => !document.getElementById('error').hidden, null, { timeout: 300_000 });
    assert.match(await errorText(), /DICOM/);
    await page.click('#error-close');
    assert.match(await page.evaluate(() => document.body.dataset.image), /\.nii$/);
  });

  test('no request leaves the page origin', async () => {
    assertSameOrigin(log, origin);
    assert.deepEqual(log.errors, []);
  });

  test('after the first visit the page opens and segments with the server gone', { skip: !build.sample && 'no sample in this build' }, async () => {
    const page = ctx.page;
    await page.evaluate(() => navigator.serviceWorker.ready.then(() => undefined));
    const cached = await page.evaluate(async () => (await (await caches.open('brainsam')).keys()).length);
    // The server really gone, not an emulated offline mode (which need not reach a service
    // worker's own requests): what the page gets now comes from its cache.
    server.closeAllConnections();
    await new Promise((done) => server.close(done));
    server = null;
    page.once('dialog', (d) => d.accept()); // edits not exported: the page asks first
    await page.reload();
    await page.waitForFunction(() => ['ready', 'failed'].includes(document.body.dataset.state), null, { timeout: 600_000 });
    assert.equal(await errorText(), '');
    assert.ok(await page.evaluate(() => navigator.serviceWorker.controller !== null), 'no service worker controls the page');
    await page.waitForFunction(() => window.brainsam.state.model && window.brainsam.state.volume, null, { timeout: 600_000 });
    console.log(`offline: ${cached} files cached; the sample and the model opened from the cache`);
    await clickSamplePutamen('10-offline-click');
  });
});
