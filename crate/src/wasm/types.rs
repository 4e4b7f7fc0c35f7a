//! The engine's replies to JavaScript: plain serde structs, turned into plain JS objects by
//! `convert::to_js`. Field names are the page's (`www/protocol.js` documents them for the
//! worker and the page); [`TS_TYPES`] declares them in the `.d.ts` that wasm-bindgen
//! emits. Replies that carry typed arrays (`predict`, `propagate`) are built as objects in
//! `engine.rs`, as serde has no `Float32Array`.
//!
//! Compiled natively too, so that the shapes are tested without a wasm build.

use serde::Serialize;

use crate::data::labels::Structure;
use crate::model::io::adapter::AdapterMeta;
use crate::model::Geometry;
use crate::segment::{End, Focus};

/// One of the 16 structures (`structures()`).
#[derive(Debug, Clone, Serialize)]
pub struct StructureInfo {
    pub id: u8,
    pub name: &'static str,
    pub rgb: [u8; 3],
    pub freesurfer: i32,
}

impl From<&Structure> for StructureInfo {
    fn from(s: &Structure) -> Self {
        Self {
            id: s.id,
            name: s.name,
            rgb: s.rgb,
            freesurfer: s.freesurfer,
        }
    }
}

/// What `load_model` loaded.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub geometry: Geometry,
    /// Windows around prompts, for a model trained on them.
    pub focus: Option<Focus>,
    /// Input channels: slices k − gap, k, k + gap (0: three copies of k).
    pub slice_gap: usize,
    /// Trained to propagate a structure (neighbour's mask as dense prompt).
    pub dense_propagation: bool,
    /// The encoder's largest attention-score buffer, against WebGPU's binding limit.
    pub attention_bytes: u64,
    pub parameters: usize,
    pub adapter: Option<AdapterInfo>,
}

/// The adapter merged into the model.
#[derive(Debug, Clone, Serialize)]
pub struct AdapterInfo {
    pub rank: usize,
    pub alpha: f64,
    /// sha256 (hex) of the base the adapter was trained on.
    pub base_sha256: String,
    /// Common ids it was trained on.
    pub labels: Vec<i32>,
}

impl From<&AdapterMeta> for AdapterInfo {
    fn from(m: &AdapterMeta) -> Self {
        Self {
            rank: m.lora.rank,
            alpha: m.lora.alpha,
            base_sha256: m.base_sha256.clone(),
            labels: m.labels.clone(),
        }
    }
}

/// Times of the warm-up runs (`warm_up`), in ms.
#[derive(Debug, Clone, Serialize)]
pub struct WarmUp {
    pub encode_ms: Vec<f64>,
    pub decode_ms: Vec<f64>,
}

/// The image `load_volume` read.
#[derive(Debug, Clone, Serialize)]
pub struct VolumeInfo {
    /// Canonical (RAS) dims, as the engine's slices and label volumes are.
    pub dims: [usize; 3],
    /// mm per voxel along the canonical axes.
    pub spacing: [f64; 3],
    /// Dims of the file as stored.
    pub source_dims: [usize; 3],
    /// The file's orientation, e.g. "LAS".
    pub axcodes: String,
    pub warnings: Vec<String>,
}

/// GPU memory held by burn's allocator (`memory`), bytes.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryInfo {
    pub reserved: u64,
    pub in_use: u64,
}

/// Where one walk of a propagation ended (`propagate`'s `ends`).
#[derive(Debug, Clone, Serialize)]
pub struct WalkEnd {
    /// The last slice kept.
    pub last: usize,
    /// Why the walk stopped there: a code.
    pub reason: &'static str,
    /// The same for people.
    pub why: &'static str,
}

impl From<&End> for WalkEnd {
    fn from(e: &End) -> Self {
        Self {
            last: e.last,
            reason: e.reason.code(),
            why: e.reason.describe(),
        }
    }
}

/// The replies in TypeScript, for the `.d.ts` (the methods name them with
/// `unchecked_return_type`); `types_match_their_typescript` keeps the two in step.
pub const TS_TYPES: &str = r#"
/** A SAM geometry, as in weights/manifest.json. */
export interface Geometry {
  embed_dim: number;
  depth: number;
  num_heads: number;
  global_attn_indexes: number[];
  image_size: number;
  patch_size: number;
  window_size: number;
}
/** A window around each prompt: `context` × its larger side, at least `min_side` px. */
export interface Focus {
  context: number;
  min_side: number;
}
export interface StructureInfo {
  id: number;
  name: string;
  rgb: [number, number, number];
  freesurfer: number;
}
export interface AdapterInfo {
  rank: number;
  alpha: number;
  base_sha256: string;
  labels: number[];
}
export interface ModelInfo {
  geometry: Geometry;
  focus: Focus | null;
  slice_gap: number;
  dense_propagation: boolean;
  attention_bytes: number;
  parameters: number;
  adapter: AdapterInfo | null;
}
export interface WarmUp {
  encode_ms: number[];
  decode_ms: number[];
}
export interface VolumeInfo {
  dims: [number, number, number];
  spacing: [number, number, number];
  source_dims: [number, number, number];
  axcodes: string;
  warnings: string[];
}
export interface MemoryInfo {
  reserved: number;
  in_use: number;
}
export interface WalkEnd {
  last: number;
  reason: string;
  why: string;
}
/** `predict`: the slice mask (rows × cols, 1 inside) and its low-resolution logits. */
export interface Prediction {
  mask: Uint8Array;
  rows: number;
  cols: number;
  iou: number;
  logits: Float32Array;
  flip_average: boolean;
}
/** `propagate`: the 3-D mask (canonical, x fastest) and how each walk ended. */
export interface Propagated {
  mask: Uint8Array;
  ends: WalkEnd[];
}
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::SUBCORTICAL;
    use crate::model::lora::LoraConfig;
    use crate::segment::StopReason;

    /// The field names of `interface name { ... }` in [`TS_TYPES`].
    fn ts_fields(name: &str) -> Vec<String> {
        let head = format!("export interface {name} {{");
        let start = TS_TYPES.find(&head).unwrap_or_else(|| panic!("no {name}")) + head.len();
        let body = &TS_TYPES[start..start + TS_TYPES[start..].find('}').unwrap()];
        body.lines()
            .filter_map(|l| l.trim().split_once(':').map(|(k, _)| k.to_string()))
            .collect()
    }

    /// Each reply serialises with the field names the page reads (written out here as
    /// `www/` uses them), and the TypeScript declares exactly those.
    #[test]
    fn types_match_their_typescript() {
        let geometry = Geometry::preset("vit_b").unwrap();
        let focus = Some(Focus {
            context: 2.0,
            min_side: 64,
        });
        let meta = AdapterMeta {
            base_sha256: "ab".into(),
            geometry: geometry.clone(),
            lora: LoraConfig::new(),
            labels: vec![1, 2],
            slice_gap: None,
            dense_propagation: None,
        };
        let end = End {
            last: 7,
            reason: StopReason::Vanished,
        };
        let cases: Vec<(&str, serde_json::Value, &[&str])> = vec![
            (
                "StructureInfo",
                serde_json::to_value(StructureInfo::from(&SUBCORTICAL[0])).unwrap(),
                &["id", "name", "rgb", "freesurfer"],
            ),
            (
                "ModelInfo",
                serde_json::to_value(ModelInfo {
                    geometry: geometry.clone(),
                    focus,
                    slice_gap: 2,
                    dense_propagation: true,
                    attention_bytes: 1,
                    parameters: 2,
                    adapter: Some(AdapterInfo::from(&meta)),
                })
                .unwrap(),
                &[
                    "geometry",
                    "focus",
                    "slice_gap",
                    "dense_propagation",
                    "attention_bytes",
                    "parameters",
                    "adapter",
                ],
            ),
            (
                "AdapterInfo",
                serde_json::to_value(AdapterInfo::from(&meta)).unwrap(),
                &["rank", "alpha", "base_sha256", "labels"],
            ),
            (
                "Geometry",
                serde_json::to_value(&geometry).unwrap(),
                &[
                    "embed_dim",
                    "depth",
                    "num_heads",
                    "global_attn_indexes",
                    "image_size",
                    "patch_size",
                    "window_size",
                ],
            ),
            (
                "Focus",
                serde_json::to_value(focus).unwrap(),
                &["context", "min_side"],
            ),
            (
                "WarmUp",
                serde_json::to_value(WarmUp {
                    encode_ms: vec![1.0],
                    decode_ms: vec![2.0],
                })
                .unwrap(),
                &["encode_ms", "decode_ms"],
            ),
            (
                "VolumeInfo",
                serde_json::to_value(VolumeInfo {
                    dims: [1, 2, 3],
                    spacing: [1.0; 3],
                    source_dims: [3, 2, 1],
                    axcodes: "LAS".into(),
                    warnings: vec![],
                })
                .unwrap(),
                &["dims", "spacing", "source_dims", "axcodes", "warnings"],
            ),
            (
                "MemoryInfo",
                serde_json::to_value(MemoryInfo {
                    reserved: 1,
                    in_use: 0,
                })
                .unwrap(),
                &["reserved", "in_use"],
            ),
            (
                "WalkEnd",
                serde_json::to_value(WalkEnd::from(&end)).unwrap(),
                &["last", "reason", "why"],
            ),
        ];
        for (name, value, page) in cases {
            let mut keys: Vec<&str> = value
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            let mut want = page.to_vec();
            keys.sort_unstable();
            want.sort_unstable();
            assert_eq!(keys, want, "{name}: serialised fields");
            let mut ts = ts_fields(name);
            ts.sort_unstable();
            assert_eq!(ts, want, "{name}: TypeScript fields");
        }
    }
}
