//! The model file: what the CLI, the browser and the trainer read and write, here only.
//!
//! A model file holds SAM's tensors (safetensors, or Meta's `.pth`) and, in a safetensors
//! header, brainsam's metadata; an adapter file (see [`super::adapter`]) may go on top.
//! Its metadata keys (named in [`super::header`]):
//! - `format` = "segment-anything" and `geometry` = the [`Geometry`] as JSON, informative
//!   (the geometry is read off the tensor shapes);
//! - `brainsam.focus` = the [`Focus`] the model was trained for, as JSON;
//! - `brainsam.slice_gap` = d of its input channels, slices k − d, k, k + d (absent: 0);
//! - `brainsam.propagation` = "dense" when trained to propagate with the neighbouring
//!   slice's mask as dense prompt (absent: not);
//! - `brainsam.mask_thresholds` = the [`MaskThresholds`] chosen for it, as JSON.
//!
//! An adapter file's key is `brainsam_adapter` = its [`AdapterMeta`], as JSON. A new key (input
//! channels, say) is a constant in `header` and a field of [`ModelMeta`], parsed in
//! [`ModelMeta::from_header`] and written in [`ModelMeta::header`]. The structure-kind table
//! is no key: its tensor (`prompt_encoder.structure_embeddings.weight`) is the record, and
//! [`load_checkpoint`] adds the table when the file has it.

use std::collections::HashMap;

use burn::prelude::Device;

use super::adapter::{apply_adapter, AdapterMeta};
use super::checkpoint::{load_checkpoint, state_dict};
use super::header::{
    header_of, DENSE_PROPAGATION, FOCUS_KEY, FORMAT, FORMAT_KEY, GEOMETRY_KEY, MASK_THRESHOLDS_KEY,
    PROPAGATION_KEY, SLICE_GAP_KEY,
};
use crate::model::build::Geometry;
use crate::model::prompt_encoder::STRUCTURE_KINDS;
use crate::model::sam::{Sam, MASK_THRESHOLD};
use crate::weights::{with_metadata, write_safetensors, StateDict, WeightsError};

/// A square window around a prompt: `context` times the prompt's larger side, at least
/// `min_side` pixels, inside the slice. A model trained on such windows (`train
/// --focus-prob`) sees small structures enlarged to its whole input: its mask logits then
/// resolve fractions of a voxel instead of two voxels (256-px input, 128² logits). Where
/// the window falls is `segment`'s part.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Focus {
    pub context: f32,
    pub min_side: usize,
}

impl Focus {
    pub fn valid(&self) -> bool {
        self.context >= 1.0 && self.context.is_finite() && self.min_side > 0
    }
}

/// The logit above which a pixel is inside the mask, per structure kind
/// (`data::labels::kind`), for a prompt on one slice and for the slices of a structure's
/// walk through the volume. SAM cuts every mask at 0; a fine-tuned model can be biased per
/// kind — masks running into the tissue around small structures, walks stopping short on
/// thin ones — and a shifted cut is the cheapest correction, chosen on subjects set apart
/// for it (`brainsam calibrate`). The two differ: on a slice the cut moves a boundary, in a
/// walk it also decides how far the walk goes. Prompts of no known kind keep 0.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MaskThresholds {
    pub slice: [f32; STRUCTURE_KINDS],
    pub walk: [f32; STRUCTURE_KINDS],
}

/// Which of a structure kind's thresholds a mask is cut at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// A prompt on one slice.
    Slice,
    /// A slice of a structure's walk through the volume.
    Walk,
}

impl MaskThresholds {
    /// Beyond this a threshold cuts nearly every mask away or keeps nearly everything: a
    /// sigmoid of 0.9999 or 0.0001.
    pub const LIMIT: f32 = 9.0;

    /// Every kind at `t`, on slices and in walks.
    pub fn uniform(t: f32) -> Self {
        Self {
            slice: [t; STRUCTURE_KINDS],
            walk: [t; STRUCTURE_KINDS],
        }
    }

    pub fn valid(&self) -> bool {
        self.slice
            .iter()
            .chain(&self.walk)
            .all(|t| t.is_finite() && t.abs() <= Self::LIMIT)
    }

    /// The threshold of `cut` masks for a structure of kind `kind` (none: SAM's).
    pub fn of(&self, cut: Cut, kind: Option<usize>) -> f32 {
        let table = match cut {
            Cut::Slice => &self.slice,
            Cut::Walk => &self.walk,
        };
        kind.and_then(|k| table.get(k).copied())
            .unwrap_or(MASK_THRESHOLD)
    }

    /// As [`Self::of`], SAM's 0 without thresholds.
    pub fn of_or_sam(t: Option<&Self>, cut: Cut, kind: Option<usize>) -> f32 {
        t.map_or(MASK_THRESHOLD, |t| t.of(cut, kind))
    }
}

/// What a model file says about its use, besides its tensors.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelMeta {
    /// Predict on windows around prompts; None for a whole-slice model (Meta's checkpoints,
    /// `.pth` files, older brainsam models).
    pub focus: Option<Focus>,
    /// Input channels are slices k − gap, k, k + gap; 0 (Meta's checkpoints, older models):
    /// three copies of slice k.
    pub slice_gap: usize,
    /// Trained to propagate: the neighbouring slice's mask as dense prompt, empty targets
    /// past a structure's end (`segment::StopRules::trained`).
    pub dense_propagation: bool,
    /// Mask thresholds chosen for the model; None: SAM's 0 for every kind.
    pub mask_thresholds: Option<MaskThresholds>,
}

impl ModelMeta {
    /// The metadata of a model file's bytes; none for a `.pth` file or a header without
    /// brainsam's keys.
    pub fn read(bytes: &[u8]) -> Self {
        header_of(bytes).map_or_else(Self::default, |h| Self::from_header(&h))
    }

    /// Parses the header entries. An entry that does not parse, or names an impossible
    /// focus, counts as absent: the model still loads and predicts on whole slices.
    pub fn from_header(header: &HashMap<String, String>) -> Self {
        let focus = header
            .get(FOCUS_KEY)
            .and_then(|json| serde_json::from_str::<Focus>(json).ok())
            .filter(Focus::valid);
        let slice_gap = header
            .get(SLICE_GAP_KEY)
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let dense_propagation =
            header.get(PROPAGATION_KEY).map(|v| v.trim()) == Some(DENSE_PROPAGATION);
        let mask_thresholds = header
            .get(MASK_THRESHOLDS_KEY)
            .and_then(|json| serde_json::from_str::<MaskThresholds>(json).ok())
            .filter(MaskThresholds::valid);
        Self {
            focus,
            slice_gap,
            dense_propagation,
            mask_thresholds,
        }
    }

    /// The header entries of a model file of `geometry` with this metadata.
    pub fn header(&self, geometry: &Geometry) -> Result<HashMap<String, String>, ModelFileError> {
        let mut h = HashMap::from([
            (FORMAT_KEY.to_string(), FORMAT.to_string()),
            (GEOMETRY_KEY.to_string(), json(GEOMETRY_KEY, geometry)?),
        ]);
        if let Some(f) = &self.focus {
            h.insert(FOCUS_KEY.to_string(), json(FOCUS_KEY, f)?);
        }
        if self.slice_gap > 0 {
            h.insert(SLICE_GAP_KEY.to_string(), self.slice_gap.to_string());
        }
        if self.dense_propagation {
            h.insert(PROPAGATION_KEY.to_string(), DENSE_PROPAGATION.to_string());
        }
        if let Some(t) = &self.mask_thresholds {
            h.insert(
                MASK_THRESHOLDS_KEY.to_string(),
                json(MASK_THRESHOLDS_KEY, t)?,
            );
        }
        Ok(h)
    }
}

/// A safetensors model file with mask thresholds in its metadata, its tensors unchanged.
pub fn with_mask_thresholds(bytes: &[u8], t: &MaskThresholds) -> Result<Vec<u8>, ModelFileError> {
    if !t.valid() {
        return Err(ModelFileError::Metadata {
            key: MASK_THRESHOLDS_KEY.to_string(),
            message: format!(
                "thresholds must be finite and within ±{}",
                MaskThresholds::LIMIT
            ),
        });
    }
    let mut header = header_of(bytes).unwrap_or_default();
    header.insert(
        MASK_THRESHOLDS_KEY.to_string(),
        json(MASK_THRESHOLDS_KEY, t)?,
    );
    with_metadata(bytes, header).map_err(ModelFileError::Model)
}

fn json<T: serde::Serialize>(key: &str, v: &T) -> Result<String, ModelFileError> {
    serde_json::to_string(v).map_err(|e| ModelFileError::Metadata {
        key: key.to_string(),
        message: e.to_string(),
    })
}

/// Why a model file could not be loaded or written.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    #[error("model: {0}")]
    Model(WeightsError),
    #[error("adapter: {0}")]
    Adapter(WeightsError),
    #[error("metadata `{key}`: {message}")]
    Metadata { key: String, message: String },
}

/// A model ready for inference.
#[derive(Debug)]
pub struct LoadedModel {
    /// Adapter, if any, applied and merged into the weights.
    pub sam: Sam,
    /// Read off the tensor shapes.
    pub geometry: Geometry,
    pub meta: ModelMeta,
    /// The applied adapter's metadata. Its `base_sha256` names the base it was trained on;
    /// a caller that hashes the weights can warn when they differ.
    pub adapter: Option<AdapterMeta>,
}

/// Reads a model file (`.safetensors` or `.pth`, geometry read off the shapes) and, when
/// given, an adapter file made for that geometry, applied and merged for inference.
pub fn load_model(
    weights: &[u8],
    adapter: Option<&[u8]>,
    device: &Device,
) -> Result<LoadedModel, ModelFileError> {
    let (mut sam, geometry) = load_checkpoint(weights, device).map_err(ModelFileError::Model)?;
    let adapter = match adapter {
        Some(bytes) => {
            let meta = apply_adapter(&mut sam, &geometry, bytes, device)
                .map_err(ModelFileError::Adapter)?;
            sam.image_encoder.merge_lora();
            Some(meta)
        }
        None => None,
    };
    let mut meta = ModelMeta::read(weights);
    if let Some(gap) = adapter.as_ref().and_then(|a| a.slice_gap) {
        meta.slice_gap = gap; // an adapter is trained for its own input
    }
    if let Some(d) = adapter.as_ref().and_then(|a| a.dense_propagation) {
        meta.dense_propagation = d;
    }
    Ok(LoadedModel {
        sam,
        geometry,
        meta,
        adapter,
    })
}

/// A model file of `sam`: every tensor under its checkpoint key (fp16 when `half`), with
/// `meta`.
pub async fn model_bytes(
    sam: &Sam,
    geometry: &Geometry,
    meta: &ModelMeta,
    half: bool,
) -> Result<Vec<u8>, ModelFileError> {
    let sd = state_dict(sam).await.map_err(ModelFileError::Model)?;
    state_dict_bytes(&sd, geometry, meta, half)
}

/// A model file of the tensors `sd` of a model of `geometry` (as `convert` averages or grows
/// them), with `meta`.
pub fn state_dict_bytes(
    sd: &StateDict,
    geometry: &Geometry,
    meta: &ModelMeta,
    half: bool,
) -> Result<Vec<u8>, ModelFileError> {
    write_safetensors(sd.iter(), half, Some(meta.header(geometry)?)).map_err(ModelFileError::Model)
}

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use super::*;
    use crate::model::common::ParamRef;
    use crate::model::io::adapter::adapter_bytes;
    use crate::model::lora::{LoraConfig, LoraTarget};
    use burn::module::Param;
    use burn::prelude::*;
    use burn::tensor::Distribution;

    fn focus() -> Focus {
        Focus {
            context: 2.0,
            min_side: 64,
        }
    }

    /// A small random model, as a fresh one is drawn from `seed`.
    fn small(device: &Device, seed: u64) -> (Sam, Geometry) {
        device.seed(seed);
        let g = Geometry::tiny(8, 4);
        (g.config().init(device), g)
    }

    /// Multimask logits of one box prompt on a fixed random image.
    fn logits(sam: &Sam, device: &Device) -> Tensor<4> {
        let x: Vec<f32> = (0..3 * 64 * 64)
            .map(|i| ((i * 7919) % 255) as f32 / 64.0 - 2.0)
            .collect();
        let x = Tensor::<4>::from_data(TensorData::new(x, [1, 3, 64, 64]), device);
        let boxes = Tensor::<2>::from_data(
            TensorData::new(vec![8.0f32, 8.0, 40.0, 30.0], [1, 4]),
            device,
        );
        let prompts = crate::model::Prompts {
            boxes: Some(boxes),
            ..Default::default()
        };
        sam.decode(sam.embed(x), prompts, true).0
    }

    fn max_diff(a: Tensor<4>, b: Tensor<4>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    #[test]
    fn focus_is_read_from_checkpoint_metadata_and_absent_otherwise() {
        let sd = StateDict::default();
        let meta = HashMap::from([(
            FOCUS_KEY.to_string(),
            serde_json::to_string(&focus()).unwrap(),
        )]);
        let with = write_safetensors(sd.iter(), false, Some(meta)).unwrap();
        let without = write_safetensors(sd.iter(), false, None).unwrap();
        assert_eq!(ModelMeta::read(&with).focus, Some(focus()));
        assert_eq!(ModelMeta::read(&without).focus, None);
        assert_eq!(ModelMeta::read(b"not a checkpoint").focus, None);
    }

    #[test]
    fn model_file_round_trips_weights_geometry_and_focus() {
        let device = crate::backend::cpu();
        let (sam, g) = small(&device, 3);
        let meta = ModelMeta {
            focus: Some(focus()),
            slice_gap: 3,
            dense_propagation: true,
            mask_thresholds: Some(MaskThresholds {
                slice: [0.5, -1.0, 0.0, 2.0, 0.25, 1.5, 3.0, -0.5, 0.0],
                walk: [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -2.0],
            }),
        };
        let bytes = pollster::block_on(model_bytes(&sam, &g, &meta, false)).unwrap();
        let header = header_of(&bytes).unwrap();
        assert_eq!(
            header.get("format").map(String::as_str),
            Some("segment-anything")
        );
        assert_eq!(
            header.get("brainsam.focus").map(String::as_str),
            Some(r#"{"context":2.0,"min_side":64}"#)
        );
        assert_eq!(
            header.get("brainsam.slice_gap").map(String::as_str),
            Some("3")
        );
        assert_eq!(
            header.get("brainsam.propagation").map(String::as_str),
            Some("dense")
        );
        assert_eq!(
            header.get("brainsam.mask_thresholds").map(String::as_str),
            Some(
                r#"{"slice":[0.5,-1.0,0.0,2.0,0.25,1.5,3.0,-0.5,0.0],"walk":[0.0,1.0,0.0,0.0,0.0,0.0,0.0,0.0,-2.0]}"#
            )
        );
        let loaded = load_model(&bytes, None, &device).unwrap();
        assert_eq!(loaded.meta, meta);
        assert_eq!(loaded.geometry, g);
        assert!(loaded.adapter.is_none());
        assert_eq!(
            max_diff(logits(&loaded.sam, &device), logits(&sam, &device)),
            0.0
        );
    }

    #[test]
    fn a_bad_or_impossible_focus_entry_counts_as_no_focus_and_the_model_still_loads() {
        let device = crate::backend::cpu();
        let (sam, _) = small(&device, 4);
        let sd = pollster::block_on(state_dict(&sam)).unwrap();
        for bad in [
            r#"{"context":"wide"}"#,
            "not json",
            r#"{"context":0.5,"min_side":64}"#,
        ] {
            let header = HashMap::from([(FOCUS_KEY.to_string(), bad.to_string())]);
            let bytes = write_safetensors(sd.iter(), false, Some(header)).unwrap();
            let loaded = load_model(&bytes, None, &device).unwrap();
            assert_eq!(loaded.meta.focus, None, "{bad}");
        }
    }

    #[test]
    fn thresholds_written_into_a_model_file_keep_its_tensors_and_metadata() {
        let device = crate::backend::cpu();
        let (sam, g) = small(&device, 6);
        let meta = ModelMeta {
            focus: Some(focus()),
            slice_gap: 2,
            ..Default::default()
        };
        let half = pollster::block_on(model_bytes(&sam, &g, &meta, true)).unwrap();
        let t = MaskThresholds {
            slice: [0.0, 1.5, 0.0, 0.0, 0.0, 0.0, 2.5, -1.0, 0.0],
            walk: [1.0; STRUCTURE_KINDS],
        };
        let out = with_mask_thresholds(&half, &t).unwrap();
        let (a, b) = (
            safetensors::SafeTensors::deserialize(&half).unwrap(),
            safetensors::SafeTensors::deserialize(&out).unwrap(),
        );
        assert_eq!(a.len(), b.len());
        for (name, view) in a.tensors() {
            let other = b.tensor(&name).unwrap();
            assert_eq!(other.dtype(), view.dtype(), "{name}");
            assert_eq!(other.data(), view.data(), "{name}");
        }
        let read = ModelMeta::read(&out);
        assert_eq!(
            read,
            ModelMeta {
                mask_thresholds: Some(t),
                ..meta
            }
        );
        assert!(with_mask_thresholds(b"not a model", &t).is_err());
        assert!(with_mask_thresholds(&half, &MaskThresholds::uniform(f32::INFINITY)).is_err());
    }

    #[test]
    fn mask_thresholds_of_the_wrong_length_or_out_of_range_count_as_none() {
        let read = |v: &str| {
            ModelMeta::from_header(&HashMap::from([(
                MASK_THRESHOLDS_KEY.to_string(),
                v.to_string(),
            )]))
            .mask_thresholds
        };
        let good = r#"{"slice":[1,0,0,0,0,0,0,0,-2],"walk":[0,0,0,3,0,0,0,0,0]}"#;
        let t = MaskThresholds {
            slice: [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -2.0],
            walk: [0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        };
        assert_eq!(read(good), Some(t));
        for bad in [
            r#"{"slice":[1,0,0],"walk":[0,0,0,0,0,0,0,0,0]}"#,
            r#"{"slice":[0,0,0,0,0,0,0,0,0,0],"walk":[0,0,0,0,0,0,0,0,0]}"#,
            r#"{"slice":[0,0,0,0,0,0,0,0,12],"walk":[0,0,0,0,0,0,0,0,0]}"#,
            r#"{"slice":[0,0,0,0,0,0,0,0,0]}"#,
            "[0,0,0,0,0,0,0,0,0]",
            "x",
        ] {
            assert_eq!(read(bad), None, "{bad}");
        }
        assert_eq!(
            (
                t.of(Cut::Slice, Some(0)),
                t.of(Cut::Slice, Some(8)),
                t.of(Cut::Slice, None)
            ),
            (1.0, -2.0, 0.0)
        );
        assert_eq!(
            (t.of(Cut::Walk, Some(3)), t.of(Cut::Walk, Some(0))),
            (3.0, 0.0)
        );
    }

    #[test]
    fn a_file_that_is_not_a_model_is_a_typed_error_naming_the_model() {
        let device = crate::backend::cpu();
        let Err(err) = load_model(b"not a checkpoint", None, &device) else {
            panic!("garbage loaded as a model");
        };
        assert!(
            matches!(err, ModelFileError::Model(WeightsError::UnknownFormat)),
            "{err}"
        );
        let (sam, g) = small(&device, 5);
        let bytes =
            pollster::block_on(model_bytes(&sam, &g, &ModelMeta::default(), false)).unwrap();
        let Err(err) = load_model(&bytes, Some(&bytes), &device) else {
            panic!("a model file loaded as an adapter");
        };
        assert!(matches!(err, ModelFileError::Adapter(_)), "{err}");
    }

    #[test]
    fn an_adapter_is_applied_and_merged_and_its_metadata_returned() {
        let device = crate::backend::cpu();
        let (base, g) = small(&device, 6);
        let lora = LoraConfig::new().with_targets(vec![LoraTarget::Q, LoraTarget::V]);
        let mut trained = base.clone();
        trained.image_encoder.add_lora(&lora, &device);
        // Non-zero B, as after training, so the adapter changes the output.
        trained
            .image_encoder
            .visit_lora("image_encoder", &mut |_, p| {
                if let ParamRef::D2(p) = p {
                    *p = Param::from_tensor(Tensor::random(
                        p.dims(),
                        Distribution::Normal(0.0, 0.2),
                        &device,
                    ));
                }
                Ok(())
            })
            .unwrap();
        let adapter_meta = AdapterMeta {
            base_sha256: "abc".into(),
            geometry: g.clone(),
            lora,
            labels: vec![10],
            slice_gap: Some(2),
            dense_propagation: Some(true),
        };
        let adapter = pollster::block_on(adapter_bytes(&trained, &adapter_meta)).unwrap();
        let weights =
            pollster::block_on(model_bytes(&base, &g, &ModelMeta::default(), false)).unwrap();

        let loaded = load_model(&weights, Some(&adapter), &device).unwrap();
        assert_eq!(loaded.adapter, Some(adapter_meta));
        assert_eq!(
            loaded.meta.slice_gap, 2,
            "the adapter's input, not the base's"
        );
        assert!(loaded.meta.dense_propagation, "the adapter's propagation");
        assert!(
            !loaded.sam.image_encoder.has_lora(),
            "adapter left unmerged"
        );
        let want = logits(&trained, &device);
        assert!(max_diff(logits(&loaded.sam, &device), want.clone()) < 1e-4);
        assert!(
            max_diff(logits(&base, &device), want) > 1e-3,
            "the adapter had no effect: the test is vacuous"
        );
    }
}
