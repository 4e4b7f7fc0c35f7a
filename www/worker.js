// @ts-check
// The engine worker: owns the wasm module (model, volume, embedding cache) so that encoding
// and propagation never block the page. Requests run one at a time; between them, slices
// around the one the user looks at are encoded ahead. The messages are typed in protocol.js.

/** @typedef {import('./protocol.js').Requests} Requests */
/** @typedef {import('./protocol.js').Replies} Replies */
/** @typedef {import('./protocol.js').Events} Events */
/** @typedef {import('./protocol.js').EngineApi} EngineApi */

// @ts-ignore: pkg/ is wasm-bindgen's output (scripts/build_web.sh), not in www/; its types
// are pkg/brainsam.d.ts, which `engine` follows through EngineApi.
import init, { Engine, structures } from './pkg/brainsam.js';

/** @type {EngineApi | null} */
let engine = null;
let hasModel = false;
let hasVolume = false;
/** @type {{axis: number, index: number, size: number} | null} */
let focus = null;
// The model predicts on a window around each prompt (its checkpoint says so): whole slices
// are then never encoded, so nothing is encoded ahead.
let windowed = false;
let pending = 0;
let queue = Promise.resolve();
const AHEAD = 3; // slices encoded ahead on each side of the focus

/**
 * @template {keyof Events} E
 * @param {E} event
 * @param {Events[E]} detail
 */
const emit = (event, detail) => postMessage({ event, detail });
const now = () => performance.now();

/**
 * A reply and the buffers in it to hand over instead of copying.
 * @template T
 * @typedef {{result: T, transfer: Transferable[]}} WithTransfer
 */

/**
 * One handler per operation: its arguments in, its reply (or the reply with the buffers to
 * transfer) out.
 * @type {{[K in keyof Requests]: (args: Requests[K]) => Promise<Replies[K] | WithTransfer<Replies[K]>>}}
 */
const handlers = {
  async init({ backend = 'auto' }) {
    await init();
    let reason = null;
    if (backend === 'auto') {
      reason = await webgpuProblem();
      if (reason) backend = 'cpu';
    }
    engine = await Engine.create(backend);
    return { backend: engine.backend(), reason: reason ?? engine.fallback_reason(), structures: structures() };
  },

  async loadModel({ url, bytes, adapter }) {
    if (url) bytes = await download(url);
    emit('model-progress', { phase: 'loading' });
    hasModel = false;
    // An adapter records the sha256 of the base it was trained on.
    const modelSha256 = adapter ? hex(await crypto.subtle.digest('SHA-256', bytes)) : null;
    const info = { ...engine.load_model(new Uint8Array(bytes), adapter ? new Uint8Array(adapter) : undefined), modelSha256 };
    windowed = Boolean(info.focus);
    emit('model-progress', { phase: 'warming' });
    const warm = await engine.warm_up();
    hasModel = true;
    return { ...info, warm };
  },

  async loadVolume({ bytes }) {
    // A file that fails to load leaves the previous volume in place.
    const info = engine.load_volume(new Uint8Array(bytes));
    const gray = engine.gray_volume();
    hasVolume = true;
    focus = null;
    return transferable({ ...info, gray }, [gray.buffer]);
  },

  async encode({ axis, index }) {
    const t = now();
    await engine.encode(axis, index);
    return { ms: now() - t };
  },

  // `structure`: the common id the prompt is for (the model may use it), or undefined.
  async predict({ axis, index, points, box, maskInput, structure }) {
    const encodeMs = windowed ? null : await ensureEncoded(axis, index);
    const t = now();
    const r = engine.predict(axis, index, new Float32Array(points.flat()), box ? new Float32Array(box) : undefined,
      maskInput ? new Float32Array(maskInput) : undefined, structure);
    const out = await r;
    const decodeMs = now() - t;
    return transferable({ ...out, encodeMs, decodeMs }, [out.mask.buffer, out.logits.buffer]);
  },

  async propagate({ axis, index, seed, structure }) {
    const t = now();
    const r = await engine.propagate(axis, index, new Uint8Array(seed), (done, total) => emit('propagate-progress', { done, total }), structure);
    return transferable({ mask: r.mask, ends: r.ends, ms: now() - t }, [r.mask.buffer]);
  },

  async exportLabels({ labels, convention }) {
    const bytes = engine.export_labels(new Uint8Array(labels), convention);
    return transferable({ bytes }, [bytes.buffer]);
  },

  async reference({ bytes }) {
    const labels = engine.load_reference(new Uint8Array(bytes));
    return transferable({ labels }, [labels.buffer]);
  },

  async memory() {
    return engine.memory();
  },

  async options({ flipAverage }) {
    engine.set_flip_average(Boolean(flipAverage));
    return {};
  },
};

// Asked before wgpu is: a missing API or adapter is a normal case here, not an error.
// A software adapter (SwiftShader, on machines without a GPU) runs SAM far slower than
// the CPU backend does, so "auto" takes the CPU then; ?backend=webgpu still forces it.
/**
 * What of WebGPU is asked here (TypeScript's DOM library does not declare it).
 * @typedef {{architecture?: string, description?: string, isFallbackAdapter?: boolean}} AdapterInfo
 * @typedef {{info?: AdapterInfo, isFallbackAdapter?: boolean}} Adapter
 * @typedef {{requestAdapter(): Promise<Adapter | null>}} Gpu
 */
async function webgpuProblem() {
  const gpu = /** @type {Navigator & {gpu?: Gpu}} */ (navigator).gpu;
  if (!gpu) return 'this browser has no WebGPU';
  try {
    const adapter = await gpu.requestAdapter();
    if (!adapter) return 'no WebGPU adapter';
    /** @type {AdapterInfo} */
    const info = adapter.info || {};
    if (info.isFallbackAdapter || adapter.isFallbackAdapter || /swiftshader/i.test(`${info.architecture} ${info.description}`)) {
      return 'only a software WebGPU adapter (SwiftShader), slower than the CPU backend';
    }
  } catch (e) {
    return `WebGPU adapter request failed: ${message(e)}`;
  }
  return null;
}

async function ensureEncoded(axis, index) {
  if (engine.is_encoded(axis, index)) return null;
  emit('encoding', { axis, index });
  const t = now();
  await engine.encode(axis, index);
  const ms = now() - t;
  emit('encoded', { axis, index, ms, ahead: false });
  return ms;
}

async function download(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`model ${url}: HTTP ${res.status}`);
  const total = Number(res.headers.get('content-length')) || 0;
  const reader = res.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    emit('model-progress', { phase: 'download', loaded, total });
  }
  const out = new Uint8Array(loaded);
  let o = 0;
  for (const c of chunks) { out.set(c, o); o += c.length; }
  return out.buffer;
}

const hex = (buf) => [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, '0')).join('');

/**
 * @template T
 * @param {T} result
 * @param {Transferable[]} transfer
 * @returns {WithTransfer<T>}
 */
function transferable(result, transfer) {
  return { result, transfer };
}

/**
 * @template {keyof Requests} K
 * @param {number} id
 * @param {K} op
 * @param {Requests[K]} args
 */
function run(id, op, args) {
  pending++;
  queue = queue
    .then(async () => {
      const h = handlers[op];
      if (!h) throw new Error(`unknown operation ${op}`);
      if (op !== 'init' && !engine) throw new Error('the engine is not initialised');
      const r = await h(args);
      if (r && typeof r === 'object' && 'transfer' in r) postMessage({ id, ok: true, result: r.result }, { transfer: r.transfer });
      else postMessage({ id, ok: true, result: r });
    })
    .catch((e) => postMessage({ id, ok: false, error: message(e) }))
    .finally(() => { pending--; setTimeout(encodeAhead, 0); });
}

// Errors from Rust arrive as JsError (an Error); anything else is shown as text.
function message(e) {
  if (e instanceof Error) return e.message;
  return String(e);
}

function encodeAhead() {
  if (pending > 0 || !hasModel || !hasVolume || !focus || !engine || windowed) return;
  const { axis, index } = focus;
  let target = null;
  for (let d = 0; d <= AHEAD && target === null; d++) {
    for (const i of d ? [index + d, index - d] : [index]) {
      if (i >= 0 && i < focus.size && !engine.is_encoded(axis, i)) { target = i; break; }
    }
  }
  if (target === null) return;
  pending++;
  queue = queue
    .then(async () => {
      const t = now();
      await engine.encode(axis, target);
      emit('encoded', { axis, index: target, ms: now() - t, ahead: true });
    })
    .catch((e) => emit('warning', { message: `encoding ahead: ${message(e)}` }))
    .finally(() => { pending--; setTimeout(encodeAhead, 0); });
}

self.onmessage = (e) => {
  const { id, op, args } = e.data;
  if (op === 'focus') {
    focus = args;
    setTimeout(encodeAhead, 0);
    return;
  }
  run(id, op, args);
};
