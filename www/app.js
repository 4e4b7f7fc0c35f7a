// @ts-check
// The page: wires the viewer, the structure list and the prompt tools to the engine worker.
// State that the tests read is on window.brainsam.

import { EngineClient } from './client.js';
import { Viewer, PLANE_AXES } from './viewer.js';
import { dice, readSlice, writeSlice, replaceLabel, countLabel, downloadBytes, volumesCsv, colourTable, fmtMs, fmtBytes } from './util.js';
import { paintLine, fillEnclosed } from './edit.js';
import { saveImage, saveWork, loadSession, clearSession } from './store.js';
import { LabelRender } from './render3d.js';
import { isDicom, dicomToNifti, droppedFiles } from './dicom.js';

/** @param {string} id */
const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
/** @param {string} id */
const $input = (id) => /** @type {HTMLInputElement} */ (document.getElementById(id));
/** @param {string} id */
const $select = (id) => /** @type {HTMLSelectElement} */ (document.getElementById(id));
/** @param {string} id */
const $button = (id) => /** @type {HTMLButtonElement} */ (document.getElementById(id));
/** The input element an event of its own is on. @param {Event} e */
const inputOf = (e) => /** @type {HTMLInputElement} */ (e.target);
/** @returns {HTMLElement[]} */
const tools = () => Array.from(document.querySelectorAll('.tool'));
const params = new URLSearchParams(location.search);
const MAX_VOLUME_UNDO = 3; // whole-volume snapshots kept for undoing 3D propagation
const CUSTOM_COLORS = [[255, 99, 71], [60, 179, 113], [238, 130, 238], [255, 215, 0], [0, 191, 255]];

const state = {
  backend: null, model: null, volume: null, gray: null, labels: null, reference: null,
  structures: [], current: 1, prompt: null, history: [], chain: Promise.resolve(),
  encodeMs: [], encodedAhead: [], decodeMs: [], lastDice: null, lastMask: null, memory: null, focusKey: '',
  // Autosave: the open file's bytes and key, whether they are stored, edits not exported yet.
  imageBytes: null, imageKey: '', imageStored: false, dirty: false, autosave: false, savedAt: 0, changedAt: 0, stroke: null,
};
const engine = new EngineClient();
const viewer = new Viewer(/** @type {HTMLCanvasElement} */ ($('planes')), Array.from(document.querySelectorAll('.view')), {
  onPoint: (axis, index, u, v, positive) => edit(() => addPoint(axis, index, u, v, positive)),
  onBox: (axis, index, box) => edit(() => setBox(axis, index, box)),
  onSlice: (axis, index) => focus(axis, index),
  onPaintStart: (axis, index, p) => paintStart(axis, index, p),
  onPaint: (axis, index, from, to) => paintStroke(from, to),
  onPaintEnd: () => paintEnd(),
  onFill: (axis, index, u, v) => edit(() => fill(axis, index, u, v)),
});
const render3d = new LabelRender(/** @type {HTMLCanvasElement} */ ($('render3d')), $('render3d-status'));
// `dice` too: the e2e suite holds it to the crate's Dice.
Object.assign(window, { brainsam: { state, viewer, engine, dice, render3d } });

// ---- status and errors -------------------------------------------------------------

function showError(e) {
  const msg = e instanceof Error ? e.message : String(e);
  console.error(msg);
  $('error-text').textContent = msg;
  $('error').hidden = false;
}
$('error-close').onclick = () => { $('error').hidden = true; };

function progress(id, fraction) {
  const el = $(id);
  el.hidden = fraction === null;
  if (fraction !== null) /** @type {HTMLElement} */ (el.firstElementChild).style.width = `${Math.round(Math.min(1, fraction) * 100)}%`;
}

function setBusy(what) {
  document.body.dataset.busy = what || '';
  $('encode-status').textContent = what || '';
}

function showTimings() {
  const e = state.encodeMs.at(-1), d = state.decodeMs.at(-1);
  const parts = [];
  if (e !== undefined) parts.push(`encoder ${fmtMs(e)} / slice`);
  if (d !== undefined) parts.push(state.model?.focus ? `window encoder + decoder ${fmtMs(d)} / click` : `decoder ${fmtMs(d)} / click`);
  if (state.decodeMs.length > 1) parts.push(`first click ${fmtMs(state.decodeMs[0])}, median ${fmtMs(median(state.decodeMs))}`);
  if (state.memory?.reserved) parts.push(`GPU memory reserved ${fmtBytes(state.memory.reserved)}`);
  $('timings').textContent = parts.join('\n');
}
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

// ---- engine events -------------------------------------------------------------------

engine.on('model-progress', (d) => {
  if (d.phase === 'download') {
    progress('model-progress', d.total ? d.loaded / d.total : 0.5);
    $('model-info').textContent = `downloading model… ${fmtBytes(d.loaded)}${d.total ? ` of ${fmtBytes(d.total)}` : ''}`;
  } else {
    progress('model-progress', d.phase === 'loading' ? 0.9 : 0.95);
    $('model-info').textContent = d.phase === 'loading' ? 'loading weights onto the device…' : 'warming up encoder and decoder (compiling GPU kernels)…';
  }
});
engine.on('encoding', (d) => { setBusy(`encoding slice ${d.index + 1}…`); progress('encode-progress', 0.5); });
engine.on('encoded', (d) => {
  state.encodeMs.push(d.ms);
  if (d.ahead) state.encodedAhead.push(`${d.axis}:${d.index}`);
  progress('encode-progress', null);
  setBusy(d.ahead ? `encoded slice ${d.index + 1} ahead (${fmtMs(d.ms)})` : '');
  showTimings();
});
engine.on('propagate-progress', (d) => {
  progress('prop-progress', d.total ? d.done / d.total : 0);
  setBusy(`3D: ${d.done} / ${d.total} slices`);
});
engine.on('warning', (d) => console.warn(d.message));
engine.on('crash', (d) => showError(`The engine stopped: ${d.message}. Reload the page.`));

// ---- structures ----------------------------------------------------------------------

function renderStructures() {
  const sel = $select('structure');
  sel.replaceChildren(...state.structures.map((s) => {
    const o = document.createElement('option');
    o.value = s.id;
    o.textContent = `■ ${s.name}`;
    o.style.color = `rgb(${s.rgb.join(',')})`;
    return o;
  }));
  sel.value = String(state.current);
  viewer.colors = new Map(state.structures.map((s) => [s.id, s.rgb]));
}
$select('structure').onchange = (e) => { state.current = Number(/** @type {HTMLSelectElement} */ (e.target).value); state.prompt = null; viewer.prompt = null; updateMaskInfo(); viewer.draw(); };
$('custom-add').onclick = () => {
  const name = $input('custom-name').value.trim();
  if (!name) return showError('Type a name for the custom structure first.');
  const used = new Set(state.structures.map((s) => s.id));
  let id = 101;
  while (used.has(id) && id < 255) id++;
  if (used.has(id)) return showError('No free label values left.');
  state.structures.push({ id, name, rgb: CUSTOM_COLORS[(id - 101) % CUSTOM_COLORS.length], custom: true });
  state.current = id;
  $input('custom-name').value = '';
  renderStructures();
};
const structureName = (id) => state.structures.find((s) => s.id === id)?.name ?? `label ${id}`;

// ---- prompts -------------------------------------------------------------------------

// Edits run one after another so that each prompt builds on the previous mask.
function edit(fn) {
  state.chain = state.chain.then(fn).catch(showError);
  return state.chain;
}

function promptFor(axis, index) {
  const p = state.prompt;
  if (p && p.axis === axis && p.index === index && p.id === state.current) return p;
  return (state.prompt = { axis, index, id: state.current, points: [], box: null, logits: null });
}
const clonePrompt = (p) => p && { ...p, points: p.points.map((q) => [...q]), box: p.box && [...p.box] };

async function addPoint(axis, index, u, v, positive) {
  const p = promptFor(axis, index);
  const before = clonePrompt(p);
  p.points.push([u, v, positive ? 1 : 0]);
  await predict(p, before);
}

async function setBox(axis, index, box) {
  const p = promptFor(axis, index);
  const before = clonePrompt(p);
  p.box = box;
  await predict(p, before);
}

async function predict(p, before) {
  viewer.prompt = p;
  viewer.draw();
  if (!state.model) { state.prompt = viewer.prompt = before; viewer.draw(); throw new Error('No model is loaded yet.'); }
  if (!state.volume) throw new Error('Open an image first.');
  setBusy('segmenting…');
  try {
    const r = await engine.call('predict', { axis: p.axis, index: p.index, points: p.points, box: p.box, maskInput: p.logits, structure: p.id });
    state.history.push({ kind: 'slice', axis: p.axis, index: p.index, labels: readSlice(state.labels, state.volume.dims, p.axis, p.index), prompt: before });
    p.logits = r.logits;
    writeSlice(state.labels, state.volume.dims, p.axis, p.index, r.mask, p.id);
    changed();
    state.decodeMs.push(r.decodeMs);
    state.lastMask = { axis: p.axis, index: p.index, id: p.id, iou: r.iou, pixels: r.mask.reduce((a, b) => a + b, 0), encodeMs: r.encodeMs, flipAverage: r.flip_average };
    await refreshMemory();
    showTimings();
  } catch (e) {
    state.prompt = viewer.prompt = before;
    throw e;
  } finally {
    setBusy('');
    viewer.draw();
    updateMaskInfo();
    updateButtons();
  }
}

function undo() {
  const h = state.history.pop();
  if (!h) return;
  if (h.kind === 'slice') writeSlice(state.labels, state.volume.dims, h.axis, h.index, h.labels, null);
  else state.labels.set(h.labels);
  state.prompt = viewer.prompt = h.prompt;
  changed();
  viewer.draw();
  updateMaskInfo();
}

function clearSlice() {
  const p = state.prompt;
  if (!p) return;
  const dims = state.volume.dims;
  state.history.push({ kind: 'slice', axis: p.axis, index: p.index, labels: readSlice(state.labels, dims, p.axis, p.index), prompt: clonePrompt(p) });
  const cur = readSlice(state.labels, dims, p.axis, p.index).map((l) => (l === p.id ? 0 : l));
  writeSlice(state.labels, dims, p.axis, p.index, cur, null);
  state.prompt = viewer.prompt = null;
  changed();
  viewer.draw();
  updateMaskInfo();
}

// ---- hand correction -------------------------------------------------------------------
// A stroke (mouse down to up) or a fill is one entry of the same undo history as the
// model's edits; afterwards the slice is the prompt's, so "Whole structure (3D)" extends
// the corrected mask.

function paintStart(axis, index, p) {
  if (!state.volume) return;
  const dims = state.volume.dims;
  state.stroke = { axis, index, before: readSlice(state.labels, dims, axis, index), prompt: clonePrompt(state.prompt), changed: 0 };
  paintStroke(p, p);
}

function paintStroke(from, to) {
  const s = state.stroke;
  if (!s) return;
  s.changed += paintLine(state.labels, state.volume.dims, s.axis, s.index, from, to, viewer.brush, state.current, viewer.tool === 'erase');
}

function paintEnd() {
  const s = state.stroke;
  state.stroke = null;
  if (!s || !s.changed) return;
  handEdited(s.axis, s.index, s.before, s.prompt);
}

function fill(axis, index, u, v) {
  if (!state.volume) throw new Error('Open an image first.');
  const dims = state.volume.dims;
  const before = readSlice(state.labels, dims, axis, index);
  const prompt = clonePrompt(state.prompt);
  if (fillEnclosed(state.labels, dims, axis, index, u, v, state.current)) handEdited(axis, index, before, prompt);
}

function handEdited(axis, index, before, prompt) {
  state.history.push({ kind: 'slice', axis, index, labels: before, prompt });
  viewer.prompt = promptFor(axis, index);
  changed();
  viewer.draw();
  updateMaskInfo();
}

// ---- autosave ------------------------------------------------------------------------------

let saveTimer = 0;
// After every change of the labels: not exported yet, and saved in the browser shortly.
function changed() {
  viewer.labelsEdited();
  render3d.schedule(state.structures);
  state.dirty = true;
  state.changedAt = Date.now();
  clearTimeout(saveTimer);
  if (state.autosave) saveTimer = setTimeout(() => saveNow().catch((e) => notice('autosave', `Could not save your work in this browser (${e.message || e}); export it to keep it.`)), 600);
}

async function saveNow() {
  if (!state.volume || !state.imageBytes) return;
  if (!state.imageStored) {
    await saveImage({ key: state.imageKey, name: state.volume.name, bytes: state.imageBytes, savedAt: Date.now() });
    state.imageStored = true;
  }
  const at = Date.now();
  await saveWork({
    image: state.imageKey, labels: state.labels.slice(), history: state.history, prompt: state.prompt,
    current: state.current, custom: state.structures.filter((s) => s.custom), savedAt: Date.now(),
  });
  state.savedAt = at; // what was saved is the state as of `at`
  notice('autosave', null);
  $('autosave-info').textContent = `Saved in this browser at ${new Date(state.savedAt).toLocaleTimeString()}${state.dirty ? ' · not exported yet' : ''}`;
}

// Offered at start when the browser holds work from an earlier visit; until the user
// answers, nothing new is saved over it.
function offerRestore(saved) {
  const n = saved.work.labels.reduce((a, l) => a + Number(l !== 0), 0);
  $('restore-text').textContent = `Unsaved work from ${new Date(saved.work.savedAt).toLocaleString()}: ${saved.image.name}, ${n} labelled voxels. Restore it?`;
  $('restore').hidden = false;
  $('restore-yes').onclick = () => edit(async () => {
    $('restore').hidden = true;
    await openImage(saved.image.bytes.slice(0), saved.image.name);
    if (saved.work.labels.length !== state.labels.length) throw new Error('The saved labels do not fit the saved image; they were not restored.');
    state.labels.set(saved.work.labels);
    viewer.labelsEdited();
    state.history = saved.work.history || [];
    state.prompt = viewer.prompt = saved.work.prompt || null;
    for (const s of saved.work.custom || []) if (!state.structures.some((t) => t.id === s.id)) state.structures.push(s);
    state.current = saved.work.current ?? state.current;
    renderStructures();
    showPrompt(state.prompt);
    render3d.schedule(state.structures);
    state.imageStored = true;
    state.autosave = true;
    state.dirty = true;
    viewer.draw();
    updateMaskInfo();
    document.body.dataset.restored = String(Date.now());
  });
  $('restore-no').onclick = () => edit(async () => {
    $('restore').hidden = true;
    await clearSession();
    state.autosave = true;
    if (state.dirty) changed();
  });
}

/** The view at a prompt: its slice, centred on its first point or its box. */
function showPrompt(p) {
  if (!p) return;
  const c = [...viewer.cursor];
  const [ua, va] = PLANE_AXES[p.axis];
  const at = p.points?.[0] ?? (p.box ? [(p.box[0] + p.box[2]) / 2, (p.box[1] + p.box[3]) / 2] : null);
  if (at) [c[ua], c[va]] = [at[0], at[1]];
  c[p.axis] = p.index;
  viewer.active = viewer.views.find((v) => v.axis === p.axis) ?? viewer.active;
  viewer.setCursor(c);
}

addEventListener('beforeunload', (e) => {
  // Saved in the browser or not, work not exported asks before the tab closes.
  if (state.dirty) { e.preventDefault(); e.returnValue = ''; }
});

async function propagate() {
  const p = state.prompt;
  const dims = state.volume.dims;
  if (!p) throw new Error('Segment the structure on one slice first (click inside it), then extend it to 3D.');
  const seed = readSlice(state.labels, dims, p.axis, p.index).map((l) => (l === p.id ? 1 : 0));
  if (!seed.some((x) => x)) throw new Error('The mask on this slice is empty: nothing to extend to 3D.');
  progress('prop-progress', 0);
  $button('propagate').disabled = true;
  try {
    const r = await engine.call('propagate', { axis: p.axis, index: p.index, seed, structure: p.id });
    state.history.push({ kind: 'volume', labels: state.labels.slice(), prompt: clonePrompt(p) });
    const volumes = state.history.filter((h) => h.kind === 'volume');
    if (volumes.length > MAX_VOLUME_UNDO) state.history.splice(state.history.indexOf(volumes[0]), 1);
    replaceLabel(state.labels, r.mask, p.id);
    changed();
    const [up, down] = r.ends;
    state.lastPropagation = {
      id: p.id, axis: p.axis, ms: r.ms, voxels: countLabel(state.labels, p.id),
      from: down.last, to: up.last, ends: r.ends.map((e) => e.reason),
      // Slice numbers as the viewer shows them (1-based); "above/below" would be wrong off axial.
      why: `stopped at ${up.last + 1}: ${up.why}; at ${down.last + 1}: ${down.why}`,
    };
    await refreshMemory();
  } finally {
    progress('prop-progress', null);
    setBusy('');
    updateButtons();
    viewer.draw();
    updateMaskInfo();
  }
}

function updateMaskInfo() {
  const lines = [];
  const m = state.lastMask;
  if (m && m.id === state.current) {
    lines.push(`${structureName(m.id)} on ${['sagittal', 'coronal', 'axial'][m.axis]} slice ${m.index + 1}: ${m.pixels} px, predicted IoU ${m.iou.toFixed(2)}`);
  }
  if (state.labels) {
    const n = countLabel(state.labels, state.current);
    const mm3 = n * state.volume.spacing.reduce((a, b) => a * b, 1);
    lines.push(`${structureName(state.current)}: ${n} voxels in 3D (${mm3 >= 1000 ? `${(mm3 / 1000).toFixed(2)} cm³` : `${Math.round(mm3)} mm³`})`);
  }
  const prop = state.lastPropagation;
  if (prop && prop.id === state.current) {
    // Why the walk ended where it did: a leak and an early stop look alike otherwise.
    lines.push(`3D: ${['sagittal', 'coronal', 'axial'][prop.axis]} slices ${prop.from + 1}–${prop.to + 1}; ${prop.why}`);
  }
  state.lastDice = null;
  if (state.reference && state.labels) {
    const id = state.current;
    const vol = dice(state.labels, state.reference, id);
    let slice = null;
    if (m && m.id === id) {
      const d = state.volume.dims;
      slice = dice(readSlice(state.labels, d, m.axis, m.index), readSlice(state.reference, d, m.axis, m.index), id);
    }
    state.lastDice = { id, slice, volume: vol };
    lines.push(`Dice vs reference: slice ${slice === null ? '–' : slice.toFixed(3)} · volume ${vol === null ? '–' : vol.toFixed(3)}`);
  }
  $('mask-info').textContent = lines.join('\n');
  $('mask-info').dataset.dice = state.lastDice ? JSON.stringify(state.lastDice) : '';
}

async function refreshMemory() {
  if (state.backend !== 'webgpu') return;
  const m = await engine.call('memory');
  if (m) state.memory = { reserved: m.reserved, inUse: m.in_use, peak: Math.max(state.memory?.peak || 0, m.reserved) };
}

function updateButtons() {
  $button('propagate').disabled = !(state.model && state.volume);
  $button('export').disabled = !state.volume;
  $button('export-volumes').disabled = !state.volume;
}

// ---- tools, display, export ------------------------------------------------------------

for (const b of tools()) {
  b.onclick = () => {
    tools().forEach((x) => x.classList.toggle('active', x === b));
    viewer.tool = b.dataset.tool;
  };
}
const helpShown = () => !$('help-overlay').hidden;
const showHelp = (on) => { $('help-overlay').hidden = !on; };
$('help-open').onclick = () => showHelp(true);
$('help-close').onclick = () => showHelp(false);
$('help-overlay').onclick = (e) => { if (e.target === $('help-overlay')) showHelp(false); };
function setBrush(r) {
  viewer.brush = Math.max(0, Math.min(15, r));
  $input('brush-size').value = String(viewer.brush);
  $('brush-size-value').textContent = String(viewer.brush);
  viewer.draw();
}
$('brush-size').oninput = (e) => setBrush(Number(inputOf(e).value));
addEventListener('keydown', (e) => {
  if (e.target instanceof Element && e.target.closest('input, select')) return;
  if (e.key === '?') showHelp(!helpShown());
  else if (e.key === 'Escape' && helpShown()) showHelp(false);
  else if ((e.ctrlKey || e.metaKey) && e.key === 'z') { e.preventDefault(); edit(undo); }
  else if (e.key === 'Escape') edit(clearSlice);
  else if (e.key === '[' || e.key === ']') setBrush(viewer.brush + (e.key === ']' ? 1 : -1));
  else if ('1234567'.includes(e.key) && e.key.length === 1) tools()[Number(e.key) - 1].click();
});
$('undo').onclick = () => edit(undo);
$('clear').onclick = () => edit(clearSlice);
$('propagate').onclick = () => edit(propagate);
$('flip-average').onchange = (e) => edit(async () => { await engine.call('options', { flipAverage: inputOf(e).checked }); });
$('opacity').oninput = (e) => { viewer.opacity = Number(inputOf(e).value) / 100; viewer.draw(); };
$('window').oninput = (e) => { viewer.window = Number(inputOf(e).value); viewer.draw(); };
$('level').oninput = (e) => { viewer.level = Number(inputOf(e).value); viewer.draw(); };
$('reset-view').onclick = () => viewer.resetZoom();

$('export').onclick = () => edit(async () => {
  const convention = $select('export-convention').value;
  const r = await engine.call('exportLabels', { labels: state.labels.slice(), convention });
  downloadBytes(r.bytes, `${exportBase()}_brainsam_${convention}.nii.gz`);
  state.dirty = false;
  if (state.savedAt) $('autosave-info').textContent = `Saved in this browser at ${new Date(state.savedAt).toLocaleTimeString()} · exported`;
});
const exportBase = () => (state.volume.name || 'image').replace(/\.(nii(\.gz)?|mg[hz])$/i, '');
$('export-volumes').onclick = () => {
  const convention = $select('export-convention').value;
  const csv = volumesCsv(state.labels, state.structures, state.volume.spacing, convention);
  downloadBytes(new TextEncoder().encode(csv), `${exportBase()}_brainsam_volumes.csv`, 'text/csv');
};
$('export-lut').onclick = () => {
  const convention = $select('export-convention').value;
  downloadBytes(new TextEncoder().encode(colourTable(state.structures, convention)), `${exportBase()}_brainsam_${convention}_LUT.txt`, 'text/plain');
};

function focus(axis, index) {
  const key = `${axis}:${index}`;
  if (!state.volume || !state.model || viewer.active.axis !== axis || key === state.focusKey) return;
  state.focusKey = key;
  engine.focus(axis, index, state.volume.dims[axis]);
}

// ---- files -------------------------------------------------------------------------------

async function openImage(bytes, name) {
  setBusy(`reading ${name}…`);
  try {
    const copy = bytes.slice(0); // the worker takes `bytes`; autosave keeps the file
    const r = await engine.call('loadVolume', { bytes }, [bytes]);
    Object.assign(state, { imageBytes: copy, imageKey: `${name}:${copy.byteLength}`, imageStored: false, dirty: false });
    state.volume = { dims: r.dims, spacing: r.spacing, name };
    state.gray = r.gray;
    state.labels = new Uint8Array(r.gray.length);
    state.reference = null;
    state.history = [];
    state.prompt = viewer.prompt = null;
    state.lastMask = null;
    state.lastPropagation = null; // of the previous image
    await viewer.setVolume(r.dims, r.spacing, r.gray, state.labels);
    render3d.show(r.dims, r.spacing, state.labels, state.structures); // not awaited: the planes need not wait
    const warn = r.warnings.length ? `\n${r.warnings.join('\n')}` : '';
    $('image-info').textContent = `${name}\n${r.source_dims.join('×')} voxels, ${r.spacing.map((s) => s.toFixed(2)).join('×')} mm, ${r.axcodes} → shown as RAS${warn}`;
    document.body.dataset.image = name;
  } finally {
    setBusy('');
    updateButtons();
    updateMaskInfo();
  }
}

async function loadModel(args, label) {
  $('model-info').textContent = `loading ${label}…`;
  progress('model-progress', 0);
  state.model = null;
  updateButtons();
  try {
    const info = await engine.call('loadModel', args);
    state.model = { ...info, label };
    const w = info.warm;
    state.warm = w;
    const g = info.geometry;
    $('model-info').textContent = `${label}\nViT ${g.embed_dim}-d × ${g.depth}, ${g.image_size} px input, ${(info.parameters / 1e6).toFixed(1)} M parameters, largest attention map ${fmtBytes(info.attention_bytes)}${info.adapter ? `\n+ LoRA adapter (rank ${info.adapter.rank})` : ''}${info.slice_gap ? `\n2.5-D input: slices k−${info.slice_gap}, k, k+${info.slice_gap}` : ''}${info.dense_propagation ? '\nwhole structure: trained propagation (the model ends the structure)' : ''}${info.focus ? `\npredicts on a window around each prompt (${info.focus.context}× its size, at least ${info.focus.min_side} px)` : ''}\nwarm-up: encoder ${fmtMs(w.encode_ms[0])} → ${fmtMs(w.encode_ms.at(-1))}, decoder ${fmtMs(w.decode_ms[0])} → ${fmtMs(w.decode_ms.at(-1))}`;
    state.focusKey = '';
    // Mirror averaging is offered for windowed models, whose windows are encoded per click.
    $('flip-average-row').hidden = !info.focus;
    notice('adapter', null);
    notice('attention', null);
    if (info.adapter && info.adapter.base_sha256 !== info.modelSha256) {
      notice('adapter', `The adapter was trained on another base model (sha256 ${info.adapter.base_sha256.slice(0, 12)}…); its masks may be poor.`);
    }
    // WebGPU guarantees 128 MiB per storage binding; larger attention maps may fail to run.
    if (state.backend === 'webgpu' && info.attention_bytes > 128 * 2 ** 20) {
      notice('attention', `This model's largest attention map (${fmtBytes(info.attention_bytes)}) exceeds WebGPU's default 128 MiB buffer binding; it may fail on some GPUs.`);
    }
    await refreshMemory();
    showTimings();
  } catch (e) {
    $('model-info').textContent = `no model loaded`;
    throw e;
  } finally {
    progress('model-progress', null);
    updateButtons();
  }
}

const readFile = (f) => f.arrayBuffer();

/** One image file, or the files of a DICOM series (converted in the page first). @param {File[]} files */
async function openFiles(files) {
  if (!files.length) return;
  if (files.length === 1 && !(await isDicom(files[0]))) return openImage(await readFile(files[0]), files[0].name);
  setBusy(`converting ${files.length} DICOM file(s)…`);
  let r;
  try { r = await dicomToNifti(files); } finally { setBusy(''); }
  await openImage(r.bytes, r.name);
  if (r.note) $('image-info').textContent += `\n${r.note}`;
}
const onFiles = (e) => { const f = Array.from(inputOf(e).files); inputOf(e).value = ''; edit(() => openFiles(f)); };
$('file-image').onchange = onFiles;
$('file-dicom').onchange = onFiles;
$('file-model').onchange = (e) => {
  const f = inputOf(e).files[0];
  if (f) edit(async () => { state.modelFile = await readFile(f); await loadModel({ bytes: state.modelFile.slice(0) }, f.name); notice('model', null); });
  inputOf(e).value = '';
};
$('file-adapter').onchange = (e) => {
  const f = inputOf(e).files[0];
  inputOf(e).value = '';
  if (!f) return;
  edit(async () => {
    const base = state.modelFile ? { bytes: state.modelFile.slice(0) } : state.bundledUrl ? { url: state.bundledUrl } : null;
    if (!base) throw new Error('Load a model before its adapter.');
    await loadModel({ ...base, adapter: await readFile(f) }, `${state.model?.label ?? 'model'} + ${f.name}`);
  });
};
$('file-reference').onchange = (e) => {
  const f = inputOf(e).files[0];
  inputOf(e).value = '';
  if (!f) return;
  edit(async () => {
    if (!state.volume) throw new Error('Open the image before its reference labels.');
    const r = await engine.call('reference', { bytes: await readFile(f) });
    state.reference = r.labels;
    updateMaskInfo();
  });
};

addEventListener('dragover', (e) => { e.preventDefault(); $('drop').hidden = false; });
addEventListener('dragleave', (e) => { if (!e.relatedTarget) $('drop').hidden = true; });
addEventListener('drop', (e) => {
  e.preventDefault();
  $('drop').hidden = true;
  const dt = e.dataTransfer;
  edit(async () => openFiles(await droppedFiles(dt)));
});

// Notices by topic (backend, model, adapter, attention); each replaces its own.
const notices = new Map();
function notice(topic, text) {
  if (text) notices.set(topic, text);
  else notices.delete(topic);
  $('notice').hidden = notices.size === 0;
  $('notice').textContent = [...notices.values()].join(' ');
}

// ---- start -------------------------------------------------------------------------------

async function start() {
  // Offline after the first visit (sw.js); a file:// page or a browser without it still works.
  navigator.serviceWorker?.register('sw.js').catch((e) => console.warn(`no offline cache: ${e}`));
  document.body.dataset.state = 'starting';
  /** @type {{sample?: {url: string, name: string} | null, model?: {url: string, name: string, trained: boolean, weak: boolean} | null}} */
  const build = await fetch('build.json').then((r) => (r.ok ? r.json() : {})).catch(() => ({}));
  const info = await engine.call('init', { backend: params.get('backend') || 'auto' });
  state.backend = info.backend;
  state.structures = info.structures.map((s) => ({ id: s.id, name: s.name, rgb: s.rgb, freesurfer: s.freesurfer }));
  renderStructures();
  $('backend').textContent = info.backend === 'webgpu' ? 'WebGPU' : 'CPU (wasm)';
  $('backend').className = `badge ${info.backend === 'webgpu' ? 'gpu' : 'cpu'}`;
  if (info.backend !== 'webgpu') notice('backend', `Running on the CPU in WebAssembly (${info.reason || 'requested'}). WebGPU on a hardware GPU would be much faster.`);
  const saved = await loadSession().catch((e) => { console.warn(`no saved session: ${e}`); return null; });
  if (saved) offerRestore(saved);
  else state.autosave = true;
  if (build.sample && params.get('sample') !== '0') {
    await edit(async () => {
      const res = await fetch(build.sample.url);
      if (!res.ok) throw new Error(`sample image: HTTP ${res.status}`);
      await openImage(await res.arrayBuffer(), build.sample.name);
    });
  }
  if (build.model && params.get('model') !== '0') {
    state.bundledUrl = build.model.url;
    if (build.model.weak) notice('model', 'The bundled model is an early one, below the quality this app aims at (see weights/manifest.json): expect poor masks. Load a better model under Model → Other model….');
    else if (!build.model.trained) notice('model', 'The bundled model is not trained: its masks are meaningless. Load a trained model (Model → Other model…).');
    await edit(() => loadModel({ url: build.model.url }, build.model.name));
  } else {
    notice('model', 'No trained model is bundled with this build: choose a SAM checkpoint (.safetensors or .pth) under Model → Other model… to segment.');
    $('model-info').textContent = 'no model bundled';
  }
  document.body.dataset.state = 'ready';
}

start().catch((e) => { showError(e); document.body.dataset.state = 'failed'; });
