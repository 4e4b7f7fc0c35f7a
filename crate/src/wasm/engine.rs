//! The exported engine: a device, a model and one image session.
//!
//! Async methods take the model and session out of the engine for the duration of the
//! call and put them back after, so no borrow is held across an `await`; a call made
//! while another is running is refused with "busy" instead of panicking.

use std::cell::{Cell, RefCell};

use burn::prelude::Device;
use wasm_bindgen::prelude::*;

use super::convert::{bytes, err, floats, now_ms, object, to_js};
use super::labels::{reference_to_common, ExportConvention};
use super::types::{AdapterInfo, MemoryInfo, ModelInfo, VolumeInfo, WalkEnd, WarmUp, TS_TYPES};
use crate::data::labels::kind;
use crate::data::nifti::{label_out_type, write_labels};
use crate::data::orient::{axcodes, to_canonical};
use crate::data::slicing::plane_axes;
use crate::data::Volume;
use crate::data::{read_image, read_labels};
use crate::model::io::{self, LoadedModel, MaskThresholds};
use crate::model::Sam;
use crate::segment::{Focus, Propagation, Session, SliceMask, SlicePrompt, StopRules};

struct Model {
    sam: Sam,
    /// Windows around prompts, for a model trained on them (checkpoint metadata).
    focus: Option<Focus>,
    /// Input channels: slices k − gap, k, k + gap (checkpoint metadata).
    slice_gap: usize,
    /// How "whole structure" propagates: trained, or by the hand-set rules.
    rules: StopRules,
    /// Per structure kind, where masks are cut (checkpoint metadata; None: SAM's 0).
    mask_thresholds: Option<MaskThresholds>,
}

#[derive(Default)]
struct State {
    model: Option<Model>,
    session: Option<Session>,
}

/// The segmentation engine behind the page (one per worker).
#[wasm_bindgen]
pub struct Engine {
    device: Device,
    backend: &'static str,
    fallback_reason: Option<String>,
    state: RefCell<State>,
    /// Average each window's prediction with its mirror's (windowed models only).
    flip_average: Cell<bool>,
}

const BUSY: &str = "the engine is busy with another request";

/// The replies' interfaces in the `.d.ts` (`unchecked_return_type` names them).
#[wasm_bindgen(typescript_custom_section)]
const TS_REPLIES: &str = TS_TYPES;

#[wasm_bindgen]
impl Engine {
    /// `backend`: "webgpu", "cpu", or "auto" (WebGPU, else the CPU with a reason).
    pub async fn create(backend: String) -> Result<Engine, JsError> {
        let (device, name, reason) = match backend.as_str() {
            "cpu" => (cpu()?, "cpu", Some("the CPU was requested".to_string())),
            "webgpu" => (gpu().await.map_err(|e| JsError::new(&e))?, "webgpu", None),
            "auto" => match gpu().await {
                Ok(d) => (d, "webgpu", None),
                Err(e) => (cpu()?, "cpu", Some(e)),
            },
            other => return Err(JsError::new(&format!("unknown backend `{other}`"))),
        };
        Ok(Engine {
            device,
            backend: name,
            fallback_reason: reason,
            state: RefCell::new(State::default()),
            flip_average: Cell::new(false),
        })
    }

    /// "webgpu" or "cpu".
    pub fn backend(&self) -> String {
        self.backend.to_string()
    }

    /// Why the CPU runs instead of WebGPU, if it does.
    pub fn fallback_reason(&self) -> Option<String> {
        self.fallback_reason.clone()
    }

    /// Loads a `.safetensors` / `.pth` SAM checkpoint (geometry read off its shapes) and
    /// optionally a brainsam adapter file (LoRA + prompt encoder + decoder, merged in).
    /// Replaces the current model; cached embeddings are dropped.
    #[wasm_bindgen(unchecked_return_type = "ModelInfo")]
    pub fn load_model(&self, weights: &[u8], adapter: Option<Vec<u8>>) -> Result<JsValue, JsError> {
        // Errors read "model: …" or "adapter: …".
        let LoadedModel {
            sam,
            geometry,
            meta: model_meta,
            adapter,
        } = io::load_model(weights, adapter.as_deref(), &self.device)
            .map_err(|e| JsError::new(&e.to_string()))?;
        let adapter_info = adapter.as_ref().map(AdapterInfo::from);
        let parameters: usize = sam.param_counts().iter().map(|(_, n)| n).sum();
        let mut st = self
            .state
            .try_borrow_mut()
            .map_err(|_| JsError::new(BUSY))?;
        if let Some(s) = st.session.as_mut() {
            s.clear_cache();
        }
        let (focus, slice_gap) = (model_meta.focus, model_meta.slice_gap);
        let dense_propagation = model_meta.dense_propagation;
        st.model = Some(Model {
            sam,
            focus,
            slice_gap,
            rules: StopRules::for_model(dense_propagation),
            mask_thresholds: model_meta.mask_thresholds,
        });
        let attention_bytes = largest_attention_bytes(&geometry);
        to_js(&ModelInfo {
            geometry,
            focus,
            slice_gap,
            dense_propagation,
            attention_bytes,
            parameters,
            adapter: adapter_info,
        })
    }

    /// Runs the encoder and the decoder on a synthetic slice so that GPU kernels are
    /// compiled and tuned before the first real click. Times of each run, in ms.
    #[wasm_bindgen(unchecked_return_type = "WarmUp")]
    pub async fn warm_up(&self) -> Result<JsValue, JsError> {
        let model = self.take_model()?;
        let r = warm_up(&model.sam, &self.device).await;
        self.put_model(model);
        let (encode, decode) = r?;
        to_js(&WarmUp {
            encode_ms: encode,
            decode_ms: decode,
        })
    }

    /// Reads a NIfTI image (`.nii` or `.nii.gz` bytes) and makes it the current image.
    /// The previous image stays if this one cannot be read.
    #[wasm_bindgen(unchecked_return_type = "VolumeInfo")]
    pub fn load_volume(&self, data: &[u8]) -> Result<JsValue, JsError> {
        let loaded = read_image(data).map_err(|e| err("image", e))?;
        let source_dims = loaded.volume.dims;
        let codes = axcodes(&loaded.volume.affine);
        let session =
            Session::new(&loaded.volume, self.device.clone()).map_err(|e| err("image", e))?;
        let info = VolumeInfo {
            dims: session.dims(),
            spacing: session.canonical_image().spacing(),
            source_dims,
            axcodes: codes,
            warnings: loaded.warnings,
        };
        let mut st = self
            .state
            .try_borrow_mut()
            .map_err(|_| JsError::new(BUSY))?;
        st.session = Some(session);
        to_js(&info)
    }

    /// The image as the model sees it, canonical order (x fastest), one byte per voxel.
    pub fn gray_volume(&self) -> Result<Vec<u8>, JsError> {
        let st = self.state.try_borrow().map_err(|_| JsError::new(BUSY))?;
        let s = st.session.as_ref().ok_or_else(no_image)?;
        let [nx, ny, nz] = s.dims();
        let mut out = Vec::with_capacity(nx * ny * nz);
        // Axial planes are whole z-layers in x-fastest order.
        for z in 0..nz {
            let p = s.slice_gray(2, z).map_err(|e| err("slice", e))?;
            out.extend_from_slice(&p.data);
        }
        Ok(out)
    }

    pub fn is_encoded(&self, axis: usize, index: usize) -> bool {
        self.state
            .try_borrow()
            .ok()
            .and_then(|st| st.session.as_ref().map(|s| s.is_encoded(axis, index)))
            .unwrap_or(false)
    }

    /// Computes (and caches) the image embedding of one slice.
    pub async fn encode(&self, axis: usize, index: usize) -> Result<(), JsError> {
        let (model, mut session) = self.take_both()?;
        let r = session.encode(&model.sam, axis, index).await;
        self.put_both(model, session);
        r.map_err(|e| err("encoding", e))?;
        // Encoding only queues GPU work; wait for it so that times mean something.
        sync(&self.device).await
    }

    /// Mask for a prompt on slice (`axis`, `index`): `points` flat `[u, v, label]*`
    /// (label 1 inside, 0 outside), `bbox` `[u0, v0, u1, v1]` inclusive, `mask_input` the
    /// `logits` of an earlier prediction on the same slice, `structure` the common id
    /// (1..=16) the prompt is for, if any (told to a model with structure embeddings). Returns
    /// `{mask: Uint8Array (rows×cols, 1 inside), rows, cols, iou, logits: Float32Array}`.
    #[wasm_bindgen(unchecked_return_type = "Prediction")]
    pub async fn predict(
        &self,
        axis: usize,
        index: usize,
        points: Vec<f32>,
        bbox: Option<Vec<f32>>,
        mask_input: Option<Vec<f32>>,
        structure: Option<i32>,
    ) -> Result<JsValue, JsError> {
        let mut prompt = slice_prompt(&points, bbox.as_deref(), mask_input)?;
        prompt.structure = structure.and_then(kind);
        let (model, mut session) = self.take_both()?;
        let flip_average = session.flip_average();
        let r = session.predict(&model.sam, axis, index, &prompt).await;
        self.put_both(model, session);
        let m = r.map_err(|e| err("prediction", e))?;
        object(&[
            ("mask", bytes(&m.data)),
            ("rows", m.rows.into()),
            ("cols", m.cols.into()),
            ("iou", m.iou.into()),
            ("logits", floats(&m.low_res_logits)),
            ("flip_average", flip_average.into()),
        ])
    }

    /// Whether later predictions of a windowed model also decode each window's mirror
    /// image and average the two (twice the encoder time, fewer errors).
    pub fn set_flip_average(&self, on: bool) {
        self.flip_average.set(on);
    }

    /// Extends a slice mask (`seed`, rows×cols of slice (`axis`, `index`)) through the
    /// volume slice by slice. `progress(done, total)` is called after each slice. Returns
    /// `{mask: Uint8Array (3-D, canonical order, x fastest, 1 inside), ends: [{last, reason,
    /// why}, …]}`: for increasing then decreasing slice index, the last slice kept and why
    /// the walk stopped there (`reason` a code, `why` a phrase for people). `structure` as
    /// for `predict`.
    #[wasm_bindgen(unchecked_return_type = "Propagated")]
    pub async fn propagate(
        &self,
        axis: usize,
        index: usize,
        seed: Vec<u8>,
        progress: js_sys::Function,
        structure: Option<i32>,
    ) -> Result<JsValue, JsError> {
        let (model, mut session) = self.take_both()?;
        let named = structure.and_then(kind);
        let r = propagate(
            &mut session,
            &model.sam,
            &model.rules,
            axis,
            index,
            (seed, named),
            &progress,
        )
        .await;
        self.put_both(model, session);
        let r = r?;
        let ends: Vec<WalkEnd> = r.ends.iter().map(WalkEnd::from).collect();
        object(&[("mask", bytes(&r.mask)), ("ends", to_js(&ends)?)])
    }

    /// The page's label volume (canonical order, `u8` ids) as `.nii.gz` bytes in the
    /// source image's voxel order and affine. `convention`: "freesurfer" or "common".
    pub fn export_labels(&self, labels: &[u8], convention: &str) -> Result<Vec<u8>, JsError> {
        let conv = ExportConvention::parse(convention).map_err(|e| JsError::new(&e))?;
        let st = self.state.try_borrow().map_err(|_| JsError::new(BUSY))?;
        let s = st.session.as_ref().ok_or_else(no_image)?;
        let values: Vec<i32> = labels.iter().map(|&v| conv.value(v)).collect();
        let vol = s.to_source(values).map_err(|e| err("export", e))?;
        write_labels(&vol, label_out_type(&vol), true).map_err(|e| err("export", e))
    }

    /// A reference label map of the current image (FreeSurfer values, same world grid, any
    /// voxel order: e.g. FreeSurfer's LIA `aseg.mgz` of a DICOM series) as canonical common ids,
    /// for scoring masks in the page.
    pub fn load_reference(&self, data: &[u8]) -> Result<Vec<u8>, JsError> {
        let loaded = read_labels(data).map_err(|e| err("reference labels", e))?;
        let st = self.state.try_borrow().map_err(|_| JsError::new(BUSY))?;
        let s = st.session.as_ref().ok_or_else(no_image)?;
        // Each file to canonical by its own affine: the grids agree there or not at all.
        let (canonical, _) =
            to_canonical(&loaded.volume).map_err(|e| err("reference labels", e))?;
        let image = s.canonical_image();
        if canonical.dims != image.dims {
            return Err(JsError::new(&format!(
                "reference labels: {:?} voxels in RAS order, the image has {:?} (not the same grid)",
                canonical.dims, image.dims
            )));
        }
        let same = (0..3)
            .all(|i| (0..4).all(|j| (canonical.affine[i][j] - image.affine[i][j]).abs() < 1e-3));
        if !same {
            return Err(JsError::new(
                "reference labels: their affine differs from the image's (not the same grid)",
            ));
        }
        Ok(reference_to_common(&canonical))
    }

    /// GPU memory held by burn's allocator: `{reserved, in_use}` bytes, or null.
    #[wasm_bindgen(unchecked_return_type = "MemoryInfo | null")]
    pub fn memory(&self) -> Result<JsValue, JsError> {
        match self.device.memory_pool_usage() {
            Some(u) => to_js(&MemoryInfo {
                reserved: u.bytes_reserved,
                in_use: u.bytes_in_use,
            }),
            None => Ok(JsValue::NULL),
        }
    }
}

impl Engine {
    fn take_model(&self) -> Result<Model, JsError> {
        let mut st = self
            .state
            .try_borrow_mut()
            .map_err(|_| JsError::new(BUSY))?;
        st.model
            .take()
            .ok_or_else(|| JsError::new("no model is loaded"))
    }

    fn put_model(&self, m: Model) {
        if let Ok(mut st) = self.state.try_borrow_mut() {
            st.model = Some(m);
        }
    }

    fn take_both(&self) -> Result<(Model, Session), JsError> {
        let mut st = self
            .state
            .try_borrow_mut()
            .map_err(|_| JsError::new(BUSY))?;
        if st.session.is_none() {
            return Err(no_image());
        }
        let model = st
            .model
            .take()
            .ok_or_else(|| JsError::new("no model is loaded"))?;
        let mut session = st.session.take().ok_or_else(no_image)?;
        session.set_focus(model.focus);
        session.set_slice_gap(model.slice_gap);
        session.set_mask_thresholds(model.mask_thresholds);
        session.set_flip_average(self.flip_average.get() && model.focus.is_some());
        Ok((model, session))
    }

    fn put_both(&self, model: Model, session: Session) {
        if let Ok(mut st) = self.state.try_borrow_mut() {
            st.model = Some(model);
            // A new image loaded meanwhile wins over the one this call used.
            st.session.get_or_insert(session);
        }
    }
}

/// Bytes of the largest attention-score buffer the encoder makes (`heads × n × n` f32 for
/// the whole grid in a global block, or for all windows at once), to hold against WebGPU's
/// default 128 MiB storage-binding limit.
fn largest_attention_bytes(g: &crate::model::Geometry) -> u64 {
    let grid = (g.image_size / g.patch_size.max(1)) as u64;
    let heads = g.num_heads as u64;
    let global = if g.global_attn_indexes.is_empty() {
        0
    } else {
        heads * grid.pow(4) * 4
    };
    let w = g.window_size.max(1) as u64;
    let windowed = grid.div_ceil(w).pow(2) * heads * w.pow(4) * 4;
    global.max(windowed)
}

fn no_image() -> JsError {
    JsError::new("no image is loaded")
}

fn cpu() -> Result<Device, JsError> {
    #[cfg(feature = "cpu")]
    return Ok(crate::backend::cpu());
    #[cfg(not(feature = "cpu"))]
    Err(JsError::new("this build has no CPU backend"))
}

async fn gpu() -> Result<Device, String> {
    #[cfg(feature = "wgpu")]
    return crate::backend::gpu()
        .await
        .map_err(|e| format!("WebGPU: {e}"));
    #[cfg(not(feature = "wgpu"))]
    Err("this build has no WebGPU backend".to_string())
}

/// Waits for the device's queued work: a one-value readback is ordered after it.
async fn sync(device: &Device) -> Result<(), JsError> {
    use burn::tensor::{Tensor, TensorData};
    let t = Tensor::<1>::from_data(TensorData::new(vec![0.0f32], [1]), device).add_scalar(1.0);
    t.into_data_async()
        .await
        .map(|_| ())
        .map_err(|e| JsError::new(&format!("waiting for the device: {e:?}")))
}

fn slice_prompt(
    points: &[f32],
    bbox: Option<&[f32]>,
    mask_input: Option<Vec<f32>>,
) -> Result<SlicePrompt, JsError> {
    if points.len() % 3 != 0 {
        return Err(JsError::new("points must be [u, v, label] triples"));
    }
    let bbox = match bbox {
        None => None,
        Some(&[u0, v0, u1, v1]) => Some([u0, v0, u1, v1]),
        Some(b) => {
            return Err(JsError::new(&format!(
                "a box has 4 numbers, got {}",
                b.len()
            )))
        }
    };
    Ok(SlicePrompt {
        points: points.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect(),
        bbox,
        // A focused model's predictions carry no logits: nothing to refine from.
        mask_input: mask_input.filter(|m| !m.is_empty()),
        ..Default::default()
    })
}

async fn warm_up(sam: &Sam, device: &Device) -> Result<(Vec<f64>, Vec<f64>), JsError> {
    // A bright disc on a ramp: something for the decoder to find.
    let n = 64;
    let mut data = Vec::with_capacity(n * n * 3);
    for z in 0..3 {
        for y in 0..n {
            for x in 0..n {
                let r2 = (x as f32 - 32.0).powi(2) + (y as f32 - 32.0).powi(2);
                data.push(if r2 < 100.0 {
                    200.0
                } else {
                    (x + y + z) as f32
                });
            }
        }
    }
    let affine = [
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
    let vol = Volume::new([n, n, 3], data, affine).map_err(|e| err("warm-up", e))?;
    let mut s = Session::new(&vol, device.clone()).map_err(|e| err("warm-up", e))?;
    let (mut enc, mut dec) = (Vec::new(), Vec::new());
    for index in 0..2 {
        let t = now_ms();
        s.encode(sam, 2, index)
            .await
            .map_err(|e| err("warm-up", e))?;
        sync(device).await?;
        enc.push(now_ms() - t);
    }
    // Each prompt size is its own kernel shape (measured in Chromium: new shapes up to six
    // points cost a compile, more did not): one to six points, a box, a box and a point,
    // then two points with the previous logits as mask input (how the page refines).
    let point = |i: usize| [(20 + 4 * i) as f32, 32.0, (i % 2 == 0) as u8 as f32];
    let mut prompts: Vec<(Vec<[f32; 3]>, Option<[f32; 4]>)> = (1..=6)
        .map(|n| ((0..n).map(point).collect(), None))
        .collect();
    let bbox = Some([20.0, 20.0, 44.0, 44.0]);
    prompts.extend([
        (vec![], bbox),
        (vec![point(0)], bbox),
        (vec![point(0), point(1)], None),
    ]);
    // The page names the structure (one more prompt token) to a model that knows them.
    let structure = sam.prompt_encoder.knows_structures().then_some(0);
    let last = prompts.len() - 1;
    let mut logits = None;
    for (i, (points, bbox)) in prompts.into_iter().enumerate() {
        let p = SlicePrompt {
            points,
            bbox,
            mask_input: if i == last { logits.take() } else { None },
            structure,
            ..Default::default()
        };
        let t = now_ms();
        let m = s
            .predict(sam, 2, 0, &p)
            .await
            .map_err(|e| err("warm-up", e))?;
        dec.push(now_ms() - t);
        logits = Some(m.low_res_logits);
    }
    Ok((enc, dec))
}

async fn propagate(
    session: &mut Session,
    sam: &Sam,
    rules: &StopRules,
    axis: usize,
    index: usize,
    (seed, structure): (Vec<u8>, Option<usize>),
    progress: &js_sys::Function,
) -> Result<Propagation, JsError> {
    let (ua, va) = plane_axes(axis).map_err(|e| err("3D", e))?;
    let dims = session.dims();
    let (rows, cols) = (dims[va], dims[ua]);
    if seed.len() != rows * cols {
        return Err(JsError::new(&format!(
            "seed mask has {} values, slice {axis} is {rows}×{cols}",
            seed.len()
        )));
    }
    let seed = SliceMask {
        rows,
        cols,
        data: seed,
        iou: 1.0,
        low_res_logits: Vec::new(),
    };
    let mut report = |done: usize, total: usize| {
        let _ = progress.call2(&JsValue::NULL, &done.into(), &total.into());
    };
    session
        .propagate(sam, axis, index, &seed, structure, rules, &mut report)
        .await
        .map_err(|e| err("3D", e))
}
