// Shared set-up for the browser tests: the built page served on localhost, Debian's
// Chromium driven by playwright-core, test inputs made by the brainsam CLI, artifacts.

import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { chromium } from 'playwright-core';
import { serve } from '../../scripts/serve.mjs';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const DIST = resolve(ROOT, process.env.BRAINSAM_DIST || 'dist');
export const ARTIFACTS = resolve(ROOT, process.env.BRAINSAM_E2E_ARTIFACTS || 'target/e2e');
// The CLI test_e2e.sh builds: under CARGO_TARGET_DIR when cargo was told to build there.
export const CLI = resolve(ROOT, process.env.BRAINSAM_CLI
  || join(process.env.CARGO_TARGET_DIR || 'target', 'debug/brainsam'));
// Real data, in the order of crate/src/data/testutil.rs: BRAINSAM_DATA, else ../shared/data
// beside the checkout, else the committed subset tests/data (cropped label maps).
const DATA = process.env.BRAINSAM_DATA ? resolve(ROOT, process.env.BRAINSAM_DATA)
  : [resolve(ROOT, '../shared/data'), join(ROOT, 'tests/data')].find((d) => existsSync(join(d, 'label_maps')))
    ?? join(ROOT, 'tests/data');
const CHROMIUM = process.env.BRAINSAM_CHROMIUM || '/usr/bin/chromium';

// Headless Chromium exposes WebGPU (a SwiftShader adapter without a GPU) only with this flag.
const WEBGPU = ['--enable-unsafe-webgpu'];
// Nothing but the page may touch the network.
const QUIET = ['--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--no-first-run', '--disable-quic', '--disable-default-apps', '--no-default-browser-check'];

export function cli(...args) {
  return execFileSync(CLI, args, { cwd: ROOT, encoding: 'utf8' });
}

/** A synthetic T1 image and its labels from a real label map (cached). */
export function synthVolume() {
  const out = join(ARTIFACTS, 'synth');
  const image = join(out, 'image.nii.gz');
  const labels = join(out, 'labels.nii.gz');
  if (!existsSync(image) || !existsSync(labels)) {
    const map = labelMap('subject_01');
    cli('synth', '--label-map', map, '--contrast', 't1', '--seed', '5', '--out', out);
  }
  return { image, labels };
}

/**
 * Voxel dimensions from a (gzipped) NIfTI-1 or -2 header, read here rather than by our
 * reader, so that the page's report is checked against the file itself.
 */
export function niftiDims(path) {
  const b = gunzipSync(readFileSync(path));
  if (b.readInt32LE(0) === 348) return [1, 2, 3].map((k) => b.readInt16LE(40 + 2 * k));
  if (b.readInt32LE(0) === 540) return [1, 2, 3].map((k) => Number(b.readBigInt64LE(16 + 8 * k)));
  throw new Error(`${path}: not a little-endian NIfTI header`);
}

/** What the build ships: build.json of the static folder. */
export function buildInfo() {
  return JSON.parse(readFileSync(join(DIST, 'build.json'), 'utf8'));
}

/**
 * A model the page can load when the build ships none: small, randomly initialised
 * (it tests the plumbing, never mask quality).
 */
export function randomModel() {
  const path = join(ARTIFACTS, 'random-model.safetensors');
  if (!existsSync(path)) {
    cli('init', '--embed-dim', '128', '--depth', '4', '--num-heads', '4', '--global-attn-indexes', '1,3',
      '--image-size', '256', '--seed', '11', '--out', path);
  }
  return path;
}

/** A label map of the data folder; a clear error when it is missing (rather than the CLI's). */
function labelMap(subject) {
  const map = join(DATA, 'label_maps', `${subject}.nii.gz`);
  if (!existsSync(map)) throw new Error(`label map ${map} not found (BRAINSAM_DATA, ../shared/data or tests/data)`);
  return map;
}

/** A brainsam adapter for `model` after one training step (tests loading, not quality). */
export function adapterFor(model) {
  // One folder per base model: an adapter records the sha256 of the base it was trained on.
  const sha = createHash('sha256').update(readFileSync(model)).digest('hex').slice(0, 16);
  const out = join(ARTIFACTS, `adapter-${sha}`);
  const path = join(out, 'adapter.safetensors');
  if (!existsSync(path)) {
    cli('train', '--model', model, '--label-maps', dirname(labelMap('subject_01')), '--subjects', 'subject_01', '--steps', '1',
      '--slices-per-step', '1', '--prompts-per-slice', '1', '--slices-per-volume', '1', '--warmup', '0', '--out', out);
  }
  return path;
}

export async function startServer() {
  if (!existsSync(join(DIST, 'index.html'))) throw new Error(`${DIST} is not built: run scripts/build_web.sh`);
  const server = await serve(DIST, 0);
  return { server, origin: `http://127.0.0.1:${server.address().port}` };
}

export async function launch({ webgpu = true } = {}) {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...QUIET, ...(webgpu ? WEBGPU : [])],
  });
}

/** A page that records every request and console error. */
export async function openPage(browser, url) {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 }, acceptDownloads: true });
  const page = await context.newPage();
  const log = { requests: [], errors: [], console: [] };
  context.on('request', (r) => log.requests.push(r.url()));
  page.on('console', (m) => {
    log.console.push(`${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => log.errors.push(String(e)));
  page.on('worker', (w) => w.on('console', (m) => log.console.push(`worker ${m.type()}: ${m.text()}`)));
  await page.goto(url);
  await page.waitForFunction(() => ['ready', 'failed'].includes(document.body.dataset.state), null, { timeout: 600_000 });
  return { page, context, log };
}

export async function screenshot(page, name) {
  mkdirSync(join(ARTIFACTS, 'screenshots'), { recursive: true });
  const path = join(ARTIFACTS, 'screenshots', `${name}.png`);
  await page.screenshot({ path });
  return path;
}

export function writeArtifact(name, data) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, name);
  writeFileSync(path, data);
  return path;
}

/** Waits until the page's edit chain is idle (every queued prompt answered). */
export async function settle(page) {
  await page.evaluate(() => window.brainsam.state.chain);
}
