//! Resuming training: the checkpoint a run writes into `<out>/checkpoint/` (model, adapters,
//! optimiser state and step), so that a killed run resumes with exactly the step it would
//! have taken next.
//!
//! burn's optimiser state is keyed by parameter id, and ids are fresh whenever a model is
//! built; the ids are therefore saved by checkpoint key and restored onto the reloaded model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::ParamId;
use burn::optim::ModuleOptimizer;
use burn::prelude::*;

use crate::model::common::{NamedParams, ParamRef};
use crate::model::io::checkpoint::{load_lora, load_sam, lora_state_dict, state_dict};
use crate::model::lora::LoraConfig;
use crate::model::{Geometry, Sam};
use crate::weights::write_safetensors;
use crate::weights::{StateDict, WeightsError};

use super::TrainError;

/// What `state.json` holds.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ResumeState {
    /// Optimiser steps taken.
    pub step: usize,
    pub geometry: Geometry,
    pub lora: Option<LoraConfig>,
    pub param_ids: BTreeMap<String, u64>,
}

fn ids_visit(sam: &mut Sam, f: &mut dyn FnMut(&str, &mut ParamId)) -> Result<(), WeightsError> {
    let mut visit = |key: &str, p: ParamRef<'_>| {
        match p {
            ParamRef::D1(p) => f(key, &mut p.id),
            ParamRef::D2(p) | ParamRef::LinearWeight(p) | ParamRef::RelPos(p) => f(key, &mut p.id),
            ParamRef::D4(p) | ParamRef::PosEmbed(p) => f(key, &mut p.id),
            ParamRef::Buffer2(_) => {}
        }
        Ok(())
    };
    sam.visit_named("", &mut visit)?;
    sam.image_encoder.visit_lora("image_encoder", &mut visit)
}

/// Parameter ids by checkpoint key.
pub fn param_ids(sam: &mut Sam) -> Result<BTreeMap<String, u64>, WeightsError> {
    let mut ids = BTreeMap::new();
    ids_visit(sam, &mut |k, id| {
        ids.insert(k.to_string(), id.val());
    })?;
    Ok(ids)
}

/// Gives every parameter the id it had when `ids` was taken.
pub fn set_param_ids(sam: &mut Sam, ids: &BTreeMap<String, u64>) -> Result<(), WeightsError> {
    let mut missing = None;
    ids_visit(sam, &mut |k, id| match ids.get(k) {
        Some(v) => *id = ParamId::from(*v),
        None => missing = Some(k.to_string()),
    })?;
    match missing {
        Some(k) => Err(WeightsError::NotSam(format!(
            "checkpoint has no id for `{k}`"
        ))),
        None => Ok(()),
    }
}

/// The weight average's file in the checkpoint folder (`train::averaging`).
const AVERAGE: &str = "average.safetensors";

/// The weight average [`save`] wrote, as a model shaped like `like`; None when the
/// checkpoint has none.
pub fn load_average(out: &Path, like: &Sam, device: &Device) -> Result<Option<Sam>, TrainError> {
    let p = dir(out).join(AVERAGE);
    if !exists(out) || !p.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(&p).map_err(|e| TrainError::io(&p, e))?;
    let mut avg = like.clone();
    let mut sd = StateDict::from_bytes(&bytes)?;
    avg.visit_named("", &mut |key, p| {
        crate::model::io::checkpoint::load_param(&mut sd, key, p, device)
    })?;
    sd.finish()?;
    Ok(Some(avg))
}

fn dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

/// True when `out` holds a checkpoint to resume from.
pub fn exists(out: &Path) -> bool {
    dir(out).join("state.json").exists()
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| TrainError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
}

/// Writes model, weight average, adapters, optimiser and state, each file atomically
/// (write, then rename); `state.json` goes last.
#[allow(clippy::too_many_arguments)]
pub fn save(
    out: &Path,
    sam: &mut Sam,
    average: Option<&Sam>,
    optim: &ModuleOptimizer,
    step: usize,
    geometry: &Geometry,
    lora: Option<&LoraConfig>,
) -> Result<(), TrainError> {
    let d = dir(out);
    std::fs::create_dir_all(&d).map_err(|e| TrainError::io(&d, e))?;
    if let Some(avg) = average {
        let sd = pollster::block_on(state_dict(avg))?;
        write_atomic(
            &d.join(AVERAGE),
            &write_safetensors(sd.iter(), false, None)?,
        )?;
    }
    let sd = pollster::block_on(state_dict(sam))?;
    write_atomic(
        &d.join("model.safetensors"),
        &write_safetensors(sd.iter(), false, None)?,
    )?;
    if lora.is_some() {
        let sd = pollster::block_on(lora_state_dict(sam))?;
        write_atomic(
            &d.join("lora.safetensors"),
            &write_safetensors(sd.iter(), false, None)?,
        )?;
    }
    let opt = optim
        .to_record()
        .into_bytes()
        .map_err(|e| TrainError::Resume(format!("optimizer state: {e:?}")))?;
    write_atomic(&d.join("optimizer.bpk"), &opt)?;
    let state = ResumeState {
        step,
        geometry: geometry.clone(),
        lora: lora.cloned(),
        param_ids: param_ids(sam)?,
    };
    let json = serde_json::to_vec_pretty(&state).map_err(|e| TrainError::Resume(e.to_string()))?;
    write_atomic(&d.join("state.json"), &json)
}

/// Reloads what [`save`] wrote: the model (encoder frozen when adapters are trained), the
/// optimiser with its moments, and the step to take next.
pub fn load(
    out: &Path,
    optim: ModuleOptimizer,
    device: &Device,
) -> Result<(Sam, ModuleOptimizer, ResumeState), TrainError> {
    let d = dir(out);
    let read = |name: &str| {
        let p = d.join(name);
        std::fs::read(&p).map_err(|e| TrainError::io(&p, e))
    };
    let state: ResumeState = serde_json::from_slice(&read("state.json")?)
        .map_err(|e| TrainError::Resume(format!("state.json: {e}")))?;
    let sd = StateDict::from_bytes(&read("model.safetensors")?)?;
    let mut sam = load_sam(&state.geometry.config(), sd, device)?;
    if let Some(cfg) = &state.lora {
        sam.image_encoder = sam.image_encoder.no_grad();
        let sd = StateDict::from_bytes(&read("lora.safetensors")?)?;
        load_lora(&mut sam, cfg, sd, device)?;
    }
    set_param_ids(&mut sam, &state.param_ids)?;
    let bytes = read("optimizer.bpk")?;
    let optim = optim
        .from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes))
        .map_err(|e| TrainError::Resume(format!("optimizer state: {e:?}")))?;
    Ok((sam, optim, state))
}
