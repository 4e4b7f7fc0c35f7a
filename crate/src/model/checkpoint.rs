//! Loading a [`Sam`] from a [`StateDict`] and writing one back, by SAM's key names.

use burn::module::Param;
use burn::prelude::*;

use super::build::Geometry;
use super::common::{NamedParams, ParamRef, Visitor};
use super::image_encoder::{resize_pos_embed, resize_rel_pos};
use super::lora::LoraConfig;
use super::prompt_encoder::{STRUCTURE_KEY, STRUCTURE_KINDS};
use super::sam::{Sam, SamConfig};
use crate::weights::{HostTensor, StateDict, WeightsError};

fn tensor<const D: usize>(t: HostTensor, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(t.data, shape), device)
}

/// Replaces every parameter of a freshly initialised model by the checkpoint's; fails on
/// a missing, mis-shaped or unused tensor.
pub fn load_sam(
    config: &SamConfig,
    mut sd: StateDict,
    device: &Device,
) -> Result<Sam, WeightsError> {
    let mut sam = config.init(device);
    // Our structure embeddings, when the file has them (Meta's files do not).
    let key = format!("prompt_encoder.{STRUCTURE_KEY}");
    match sd.shape(&key) {
        None => {}
        // Kinds index the rows: a table of another size would index past its end.
        Some(&[STRUCTURE_KINDS, _]) => sam.prompt_encoder.add_structures(STRUCTURE_KINDS, device),
        Some(other) => {
            return Err(WeightsError::NotSam(format!(
                "`{key}` has shape {other:?}, expected [{STRUCTURE_KINDS}, embed_dim]"
            )))
        }
    }
    sam.visit_named("", &mut |key, p| load_param(&mut sd, key, p, device))?;
    sd.finish()?;
    Ok(sam)
}

/// Adds adapters of `config` to `sam`'s encoder and fills them from `sd` (which must hold
/// exactly the adapter tensors).
pub fn load_lora(
    sam: &mut Sam,
    config: &LoraConfig,
    mut sd: StateDict,
    device: &Device,
) -> Result<(), WeightsError> {
    sam.image_encoder.add_lora(config, device);
    sam.image_encoder
        .visit_lora("image_encoder", &mut |key, p| {
            load_param(&mut sd, key, p, device)
        })?;
    sd.finish()
}

/// Replaces one parameter by the checkpoint's tensor of the same key.
pub(crate) fn load_param(
    sd: &mut StateDict,
    key: &str,
    p: ParamRef<'_>,
    device: &Device,
) -> Result<(), WeightsError> {
    match p {
        ParamRef::D1(p) => {
            let s: [usize; 1] = p.dims();
            *p = Param::from_tensor(tensor(sd.take(key, &s)?, s, device));
        }
        ParamRef::D2(p) => {
            let s: [usize; 2] = p.dims();
            *p = Param::from_tensor(tensor(sd.take(key, &s)?, s, device));
        }
        ParamRef::D4(p) => {
            let s: [usize; 4] = p.dims();
            *p = Param::from_tensor(tensor(sd.take(key, &s)?, s, device));
        }
        ParamRef::Buffer2(t) => {
            let s: [usize; 2] = t.dims();
            *t = tensor(sd.take(key, &s)?, s, device);
        }
        ParamRef::LinearWeight(p) => {
            let [d_in, d_out]: [usize; 2] = p.dims();
            let w = tensor(sd.take(key, &[d_out, d_in])?, [d_out, d_in], device);
            *p = Param::from_tensor(w.transpose());
        }
        ParamRef::PosEmbed(p) => {
            let s: [usize; 4] = p.dims();
            let t = resize_pos_embed(key, sd.take_any(key, &s)?, s)?;
            *p = Param::from_tensor(tensor(t, s, device));
        }
        ParamRef::RelPos(p) => {
            let s: [usize; 2] = p.dims();
            let t = resize_rel_pos(key, sd.take_any(key, &s)?, s)?;
            *p = Param::from_tensor(tensor(t, s, device));
        }
    }
    Ok(())
}

/// Reads a `.pth` or `.safetensors` SAM checkpoint, geometry taken from its shapes.
pub fn load_checkpoint(bytes: &[u8], device: &Device) -> Result<(Sam, Geometry), WeightsError> {
    let sd = StateDict::from_bytes(bytes)?;
    let geometry = Geometry::from_state_dict(&sd)?;
    let sam = load_sam(&geometry.config(), sd, device)?;
    Ok((sam, geometry))
}

/// Every parameter of `sam` under its checkpoint key, in PyTorch layout.
pub async fn state_dict(sam: &Sam) -> Result<StateDict, WeightsError> {
    let mut sam = sam.clone();
    collect_named(|f| sam.visit_named("", f)).await
}

/// The adapter tensors of `sam`'s encoder (empty when it has none).
pub async fn lora_state_dict(sam: &Sam) -> Result<StateDict, WeightsError> {
    let mut encoder = sam.image_encoder.clone();
    collect_named(|f| encoder.visit_lora("image_encoder", f)).await
}

/// Reads back every parameter a traversal names.
pub(crate) async fn collect_named(
    traverse: impl FnOnce(&mut Visitor<'_>) -> Result<(), WeightsError>,
) -> Result<StateDict, WeightsError> {
    let mut pending: Vec<(String, Vec<usize>, Tensor<1>)> = Vec::new();
    traverse(&mut |key, p| {
        let (shape, flat): (Vec<usize>, Tensor<1>) = match p {
            ParamRef::D1(p) => (p.dims().to_vec(), p.val()),
            ParamRef::D2(p) | ParamRef::RelPos(p) => (p.dims().to_vec(), p.val().flatten(0, 1)),
            ParamRef::D4(p) | ParamRef::PosEmbed(p) => (p.dims().to_vec(), p.val().flatten(0, 3)),
            ParamRef::Buffer2(t) => (t.dims().to_vec(), t.clone().flatten(0, 1)),
            ParamRef::LinearWeight(p) => {
                let w = p.val().transpose();
                (w.dims().to_vec(), w.flatten(0, 1))
            }
        };
        pending.push((key.to_string(), shape, flat));
        Ok(())
    })?;
    let mut sd = StateDict::new();
    for (key, shape, flat) in pending {
        let data = flat
            .into_data_async()
            .await
            .map_err(|e| WeightsError::NotSam(format!("reading `{key}` from the device: {e:?}")))?
            .try_into_vec::<f32>()
            .map_err(|e| WeightsError::NotSam(format!("`{key}` is not f32: {e:?}")))?;
        sd.insert(key, HostTensor::new(shape, data));
    }
    Ok(sd)
}
