//! The adapter file: what LoRA fine-tuning trained (encoder adapters, prompt encoder, mask
//! decoder) in one safetensors file, with the metadata needed to use it safely — the base
//! checkpoint's hash, its geometry, the adapter shape and the structures it was trained on.

use std::collections::HashMap;

use burn::prelude::*;
use safetensors::SafeTensors;

use super::checkpoint::{collect_named, load_lora, load_param};
use super::header::ADAPTER_KEY;
use crate::model::build::Geometry;
use crate::model::common::{NamedParams, ParamRef};
use crate::model::lora::LoraConfig;
use crate::model::sam::Sam;
use crate::weights::{write_safetensors, StateDict, WeightsError};

/// Metadata of an adapter file.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdapterMeta {
    /// sha256 (hex) of the base checkpoint file the adapter was trained on.
    pub base_sha256: String,
    pub geometry: Geometry,
    pub lora: LoraConfig,
    /// Common structure ids (see `data::labels`) it was trained on.
    pub labels: Vec<i32>,
    /// The slice gap of the input it was trained on (see `ModelMeta`); None: the base's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice_gap: Option<usize>,
    /// Trained to propagate with dense prompts (see `ModelMeta`); None: as the base.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dense_propagation: Option<bool>,
}

fn is_lora_key(k: &str) -> bool {
    k.contains(".attn.lora_") || k.contains(".mlp.lora_")
}

/// The adapter of `sam` (adapters + prompt encoder + mask decoder) as safetensors bytes.
pub async fn adapter_bytes(sam: &Sam, meta: &AdapterMeta) -> Result<Vec<u8>, WeightsError> {
    let mut s = sam.clone();
    let sd = collect_named(|f| {
        s.image_encoder.visit_lora("image_encoder", f)?;
        s.prompt_encoder.visit_named("prompt_encoder", f)?;
        s.mask_decoder.visit_named("mask_decoder", f)
    })
    .await?;
    let json = serde_json::to_string(meta).map_err(|e| WeightsError::NotSam(e.to_string()))?;
    let metadata = HashMap::from([(ADAPTER_KEY.to_string(), json)]);
    write_safetensors(sd.iter(), false, Some(metadata))
}

/// Reads an adapter file's metadata.
pub fn adapter_meta(bytes: &[u8]) -> Result<AdapterMeta, WeightsError> {
    let (_, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| WeightsError::NotSam(format!("adapter is not a safetensors file: {e}")))?;
    let json = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(ADAPTER_KEY))
        .ok_or_else(|| {
            WeightsError::NotSam("not a brainsam adapter (no adapter metadata)".into())
        })?;
    serde_json::from_str(json).map_err(|e| WeightsError::NotSam(format!("adapter metadata: {e}")))
}

/// Applies an adapter to a base model: adds the adapters, replaces prompt encoder and mask
/// decoder. Refuses an adapter made for another geometry; returns its metadata.
pub fn apply_adapter(
    sam: &mut Sam,
    geometry: &Geometry,
    bytes: &[u8],
    device: &Device,
) -> Result<AdapterMeta, WeightsError> {
    let meta = adapter_meta(bytes)?;
    if meta.geometry != *geometry {
        return Err(WeightsError::NotSam(format!(
            "adapter was trained on a model of geometry {:?}, not {:?}",
            meta.geometry, geometry
        )));
    }
    let all = StateDict::from_bytes(bytes)?;
    let (mut lora, mut rest) = (StateDict::new(), StateDict::new());
    for (k, t) in all.iter() {
        if is_lora_key(k) {
            lora.insert(k.clone(), t.clone());
        } else {
            rest.insert(k.clone(), t.clone());
        }
    }
    load_lora(sam, &meta.lora, lora, device)?;
    sam.prompt_encoder
        .visit_named("prompt_encoder", &mut |k, p| {
            load_param(&mut rest, k, p, device)
        })?;
    sam.mask_decoder.visit_named("mask_decoder", &mut |k, p| {
        load_param(&mut rest, k, p, device)
    })?;
    rest.finish()?;
    Ok(meta)
}

/// Parameters in an adapter file of `sam` (adapters + prompt encoder + mask decoder).
pub fn adapter_params(sam: &Sam) -> usize {
    let mut s = sam.clone();
    let mut n = 0;
    let mut count = |_: &str, p: ParamRef<'_>| {
        n += match p {
            ParamRef::D1(p) => p.num_params(),
            ParamRef::D2(p) | ParamRef::LinearWeight(p) | ParamRef::RelPos(p) => p.num_params(),
            ParamRef::D4(p) | ParamRef::PosEmbed(p) => p.num_params(),
            ParamRef::Buffer2(_) => 0,
        };
        Ok(())
    };
    let _ = s.image_encoder.visit_lora("image_encoder", &mut count);
    let _ = s.prompt_encoder.visit_named("prompt_encoder", &mut count);
    let _ = s.mask_decoder.visit_named("mask_decoder", &mut count);
    n
}

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use super::*;
    use crate::model::lora::LoraTarget;
    use burn::tensor::Distribution;

    #[test]
    fn adapter_round_trip_gives_the_same_logits_merged_or_not() {
        let device = crate::backend::cpu();
        device.seed(11);
        let g = Geometry::tiny(8, 4);
        let base = g.config().init(&device);
        let lora =
            LoraConfig::new().with_targets(vec![LoraTarget::Q, LoraTarget::V, LoraTarget::Proj]);
        let mut trained = base.clone();
        trained.image_encoder.add_lora(&lora, &device);
        // Non-zero B (as after training) and a changed decoder, so the test can fail.
        trained
            .image_encoder
            .visit_lora("image_encoder", &mut |_, p| {
                if let crate::model::common::ParamRef::D2(p) = p {
                    *p = burn::module::Param::from_tensor(Tensor::random(
                        p.dims(),
                        Distribution::Normal(0.0, 0.2),
                        &device,
                    ));
                }
                Ok(())
            })
            .unwrap();
        trained.mask_decoder.iou_token = burn::module::Param::from_tensor(Tensor::random(
            [1, 256],
            Distribution::Normal(0.0, 1.0),
            &device,
        ));
        let meta = AdapterMeta {
            base_sha256: "x".into(),
            geometry: g.clone(),
            lora: lora.clone(),
            labels: vec![1, 2],
            slice_gap: Some(1),
            dense_propagation: Some(true),
        };
        let bytes = pollster::block_on(adapter_bytes(&trained, &meta)).unwrap();
        assert_eq!(adapter_meta(&bytes).unwrap(), meta);

        let mut loaded = base.clone();
        apply_adapter(&mut loaded, &g, &bytes, &device).unwrap();
        let x = Tensor::<4>::random([1, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
        let boxes = Tensor::<2>::from_data(
            TensorData::new(vec![8.0f32, 8.0, 40.0, 30.0], [1, 4]),
            &device,
        );
        let run = |s: &Sam| {
            s.decode(
                s.embed(x.clone()),
                crate::model::Prompts {
                    boxes: Some(boxes.clone()),
                    ..Default::default()
                },
                true,
            )
            .0
        };
        let want = run(&trained);
        let diff = |a: Tensor<4>, b: Tensor<4>| -> f32 { (a - b).abs().max().into_scalar() };
        assert!(diff(run(&loaded), want.clone()) < 1e-5);
        assert!(
            diff(run(&base), want.clone()) > 1e-3,
            "adapter had no effect: test is vacuous"
        );
        loaded.image_encoder.merge_lora();
        assert!(diff(run(&loaded), want.clone()) < 1e-4);
        loaded.image_encoder.unmerge_lora();
        assert!(diff(run(&loaded), want) < 1e-4);

        let other = Geometry {
            depth: 3,
            global_attn_indexes: vec![2],
            ..g.clone()
        };
        let mut wrong = other.config().init(&device);
        assert!(apply_adapter(&mut wrong, &other, &bytes, &device).is_err());
    }
}
