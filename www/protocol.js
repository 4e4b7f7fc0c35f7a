// @ts-check
// The messages between the page (client.js, app.js) and the engine worker (worker.js), and
// the engine's replies, as JSDoc types for `tsc --checkJs`; nothing here runs. The engine's
// replies mirror crate/src/wasm/types.rs, whose TypeScript (pkg/brainsam.d.ts, emitted by
// wasm-bindgen) declares the same interfaces.

// ---- the engine's replies (crate/src/wasm) -------------------------------------------

/**
 * A SAM geometry, as in weights/manifest.json.
 * @typedef {object} Geometry
 * @property {number} embed_dim
 * @property {number} depth
 * @property {number} num_heads
 * @property {number[]} global_attn_indexes
 * @property {number} image_size
 * @property {number} patch_size
 * @property {number} window_size
 */

/**
 * A window around each prompt: `context` × its larger side, at least `min_side` px.
 * @typedef {object} Focus
 * @property {number} context
 * @property {number} min_side
 */

/**
 * @typedef {object} StructureInfo
 * @property {number} id common id, 1..=16
 * @property {string} name
 * @property {number[]} rgb
 * @property {number} freesurfer FreeSurfer aseg value
 */

/**
 * @typedef {object} AdapterInfo
 * @property {number} rank
 * @property {number} alpha
 * @property {string} base_sha256 sha256 (hex) of the base it was trained on
 * @property {number[]} labels
 */

/**
 * @typedef {object} ModelInfo
 * @property {Geometry} geometry
 * @property {Focus | null} focus windows around prompts, for a model trained on them
 * @property {number} slice_gap input channels are slices k − gap, k, k + gap (0: copies of k)
 * @property {boolean} dense_propagation trained to propagate (the neighbour's mask as dense prompt)
 * @property {number} attention_bytes the encoder's largest attention-score buffer
 * @property {number} parameters
 * @property {AdapterInfo | null} adapter
 */

/**
 * Times of the warm-up runs, ms.
 * @typedef {object} WarmUp
 * @property {number[]} encode_ms
 * @property {number[]} decode_ms
 */

/**
 * @typedef {object} VolumeInfo
 * @property {number[]} dims canonical (RAS) dims
 * @property {number[]} spacing mm per voxel, canonical axes
 * @property {number[]} source_dims dims of the file as stored
 * @property {string} axcodes the file's orientation, e.g. "LAS"
 * @property {string[]} warnings
 */

/**
 * GPU memory held by burn's allocator, bytes.
 * @typedef {object} MemoryInfo
 * @property {number} reserved
 * @property {number} in_use
 */

/**
 * Where one walk of a propagation ended.
 * @typedef {object} WalkEnd
 * @property {number} last the last slice kept
 * @property {string} reason a code
 * @property {string} why the same for people
 */

/**
 * A slice mask (rows × cols, 1 inside) and its low-resolution logits.
 * @typedef {object} Prediction
 * @property {Uint8Array} mask
 * @property {number} rows
 * @property {number} cols
 * @property {number} iou the decoder's IoU estimate
 * @property {Float32Array} logits
 * @property {boolean} flip_average
 */

/**
 * A 3-D mask (canonical, x fastest) and how each walk ended: increasing, then decreasing
 * slice index.
 * @typedef {object} Propagated
 * @property {Uint8Array} mask
 * @property {WalkEnd[]} ends
 */

/**
 * The wasm engine as the worker uses it (pkg/brainsam.d.ts declares it in full).
 * @typedef {object} EngineApi
 * @property {() => string} backend
 * @property {() => string | undefined} fallback_reason
 * @property {(weights: Uint8Array, adapter?: Uint8Array) => ModelInfo} load_model
 * @property {() => Promise<WarmUp>} warm_up
 * @property {(data: Uint8Array) => VolumeInfo} load_volume
 * @property {() => Uint8Array} gray_volume
 * @property {(axis: number, index: number) => boolean} is_encoded
 * @property {(axis: number, index: number) => Promise<void>} encode
 * @property {(axis: number, index: number, points: Float32Array, bbox?: Float32Array, maskInput?: Float32Array, structure?: number) => Promise<Prediction>} predict
 * @property {(on: boolean) => void} set_flip_average
 * @property {(axis: number, index: number, seed: Uint8Array, progress: (done: number, total: number) => void, structure?: number) => Promise<Propagated>} propagate
 * @property {(labels: Uint8Array, convention: string) => Uint8Array} export_labels
 * @property {(data: Uint8Array) => Uint8Array} load_reference
 * @property {() => MemoryInfo | null} memory
 */

// ---- page → worker -------------------------------------------------------------------

/** @typedef {[number, number, number]} Point `[u, v, 1 | 0]`: inside or outside */
/** @typedef {[number, number, number, number]} Box `[u0, v0, u1, v1]`, inclusive */

/**
 * The arguments of each operation.
 * @typedef {object} Requests
 * @property {{backend?: string}} init `auto`, `webgpu` or `cpu`
 * @property {{url?: string, bytes?: ArrayBuffer, adapter?: ArrayBuffer}} loadModel
 * @property {{bytes: ArrayBuffer}} loadVolume
 * @property {{axis: number, index: number}} encode
 * @property {{axis: number, index: number, points: Point[], box: Box | null, maskInput: Float32Array | null, structure?: number}} predict
 * @property {{axis: number, index: number, seed: Uint8Array, structure?: number}} propagate
 * @property {{labels: Uint8Array, convention: string}} exportLabels `freesurfer` or `common`
 * @property {{bytes: ArrayBuffer}} reference
 * @property {{}} memory
 * @property {{flipAverage: boolean}} options
 */

/** @typedef {keyof Requests} Op */

/**
 * A request: `id` matches its reply.
 * @typedef {{id: number, op: Op, args: Requests[Op]}} Request
 */

/**
 * The slice the user looks at, for encoding ahead (no reply).
 * @typedef {{op: 'focus', args: {axis: number, index: number, size: number}}} FocusHint
 */

// ---- worker → page -------------------------------------------------------------------

/**
 * What each operation resolves to.
 * @typedef {object} Replies
 * @property {{backend: string, reason: string | null | undefined, structures: StructureInfo[]}} init
 * @property {ModelInfo & {modelSha256: string | null, warm: WarmUp}} loadModel
 * @property {VolumeInfo & {gray: Uint8Array}} loadVolume the image as the model sees it, one byte per voxel
 * @property {{ms: number}} encode
 * @property {Prediction & {encodeMs: number | null, decodeMs: number}} predict
 * @property {Propagated & {ms: number}} propagate
 * @property {{bytes: Uint8Array}} exportLabels `.nii.gz` bytes
 * @property {{labels: Uint8Array}} reference canonical common ids
 * @property {MemoryInfo | null} memory
 * @property {{}} options
 */

/**
 * A reply to request `id`.
 * @typedef {{id: number, ok: true, result: Replies[Op]} | {id: number, ok: false, error: string}} Reply
 */

/**
 * What each event carries (`crash`: the worker failed; client.js sends it, not the worker).
 * @typedef {{
 *   'model-progress': {phase: 'loading' | 'warming'} | {phase: 'download', loaded: number, total: number},
 *   encoding: {axis: number, index: number},
 *   encoded: {axis: number, index: number, ms: number, ahead: boolean},
 *   'propagate-progress': {done: number, total: number},
 *   warning: {message: string},
 *   crash: {message: string},
 * }} Events
 */

/**
 * An event from the worker: progress and status between replies.
 * @typedef {{event: keyof Events, detail: Events[keyof Events]}} EventMessage
 */

export {};
