//! Loading a [`Sam`] from a [`StateDict`] and writing one back, by SAM's key names, and the
//! geometry a state dict's shapes imply.

use burn::module::Param;
use burn::prelude::*;

use super::resample::{resize_pos_embed, resize_rel_pos};
use crate::model::build::Geometry;
use crate::model::common::{NamedParams, ParamRef, Visitor};
use crate::model::fine_features::{FINE_CHANNELS, FINE_KEY};
use crate::model::lora::LoraConfig;
use crate::model::prompt_encoder::{STRUCTURE_KEY, STRUCTURE_KINDS};
use crate::model::sam::{Sam, SamConfig};
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
    // Our fine features, likewise; their shapes are checked as every tensor's.
    let key = format!("{FINE_KEY}.stem.weight");
    match sd.shape(&key) {
        None => {}
        Some(&[FINE_CHANNELS, 3, _, _]) if sam.add_fine_features(device) => {}
        Some(other) => {
            return Err(WeightsError::NotSam(format!(
                "`{key}` has shape {other:?}, expected [{FINE_CHANNELS}, 3, patch / 4, patch / 4] \
                 for a patch that is a multiple of 4"
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
            // Transposed here, not as a view: a strided weight is copied on every forward.
            let w = sd.take(key, &[d_out, d_in])?.data;
            let mut t = vec![0.0; w.len()];
            for (o, row) in w.chunks_exact(d_in).enumerate() {
                for (i, v) in row.iter().enumerate() {
                    t[i * d_out + o] = *v;
                }
            }
            *p = Param::from_tensor(Tensor::from_data(TensorData::new(t, [d_in, d_out]), device));
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
    let geometry = geometry_of(&sd)?;
    let sam = load_sam(&geometry.config(), sd, device)?;
    Ok((sam, geometry))
}

/// Reads a model's geometry off SAM's tensor shapes: embed dim from the patch embedding,
/// depth from the block count, heads from the relative-position width, global blocks from the
/// relative-position length, image size from the position grid.
pub fn geometry_of(sd: &StateDict) -> Result<Geometry, WeightsError> {
    let shape = |k: &str| {
        sd.shape(k)
            .map(<[usize]>::to_vec)
            .ok_or_else(|| WeightsError::NotSam(format!("no tensor `{k}`")))
    };
    let patch = shape("image_encoder.patch_embed.proj.weight")?;
    let (embed_dim, patch_size) = match patch.as_slice() {
        [e, 3, p, p2] if p == p2 => (*e, *p),
        other => {
            return Err(WeightsError::NotSam(format!(
                "patch embedding has shape {other:?}, expected [embed_dim, 3, p, p]"
            )))
        }
    };
    let grid = match shape("image_encoder.pos_embed")?.as_slice() {
        [1, g, g2, _] if g == g2 => *g,
        other => {
            return Err(WeightsError::NotSam(format!(
                "pos_embed has shape {other:?}"
            )))
        }
    };
    let depth = (0..)
        .take_while(|i| {
            sd.shape(&format!("image_encoder.blocks.{i}.norm1.weight"))
                .is_some()
        })
        .count();
    if depth == 0 {
        return Err(WeightsError::NotSam("no image encoder blocks".into()));
    }
    let mut num_heads = 0;
    let mut global_attn_indexes = Vec::new();
    let mut window_size = None;
    for i in 0..depth {
        let rel = shape(&format!("image_encoder.blocks.{i}.attn.rel_pos_h"))?;
        let (len, head_dim) = match rel.as_slice() {
            [l, d] if *d > 0 => (*l, *d),
            other => {
                return Err(WeightsError::NotSam(format!(
                    "block {i} rel_pos_h has shape {other:?}"
                )))
            }
        };
        num_heads = embed_dim / head_dim;
        // Global blocks span the whole grid (2g - 1 positions); windowed ones 2w - 1.
        if len == 2 * grid - 1 {
            global_attn_indexes.push(i);
        } else {
            window_size = Some(len.div_ceil(2));
        }
    }
    let g = Geometry {
        embed_dim,
        depth,
        num_heads,
        global_attn_indexes,
        image_size: grid * patch_size,
        patch_size,
        window_size: window_size.unwrap_or(14),
    };
    g.validate()?;
    Ok(g)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_is_read_off_tensor_shapes() {
        let mut sd = StateDict::new();
        let mut put = |k: &str, s: &[usize]| {
            sd.insert(
                k,
                HostTensor::new(s.to_vec(), vec![0.0; s.iter().product()]),
            )
        };
        put("image_encoder.patch_embed.proj.weight", &[64, 3, 16, 16]);
        put("image_encoder.pos_embed", &[1, 16, 16, 64]);
        for (i, len) in [27, 31, 27].into_iter().enumerate() {
            put(&format!("image_encoder.blocks.{i}.norm1.weight"), &[64]);
            put(
                &format!("image_encoder.blocks.{i}.attn.rel_pos_h"),
                &[len, 16],
            );
        }
        let g = geometry_of(&sd).unwrap();
        assert_eq!(
            g,
            Geometry {
                embed_dim: 64,
                depth: 3,
                num_heads: 4,
                global_attn_indexes: vec![1],
                image_size: 256,
                patch_size: 16,
                window_size: 14,
            }
        );
    }
}
