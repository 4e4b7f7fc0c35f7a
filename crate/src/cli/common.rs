//! What several subcommands share: loading models and adapters, subjects, `--focus`,
//! `--pairs` and `--labels`.

use std::error::Error;
use std::path::{Path, PathBuf};

use brainsam::data::datasets::{discover, Dataset};
use brainsam::data::labels::{to_common, Convention};
use brainsam::data::nifti::read_file;
use brainsam::data::read_labels;
use brainsam::data::{to_canonical, LabelVolume, Volume};
use brainsam::model::io::{self, LoadedModel, MaskThresholds, ModelFileError, ModelMeta};
use brainsam::model::{Geometry, Sam};
use brainsam::segment::{Focus, Session};
use burn::prelude::Device;
use sha2::{Digest, Sha256};

pub type Res<T = ()> = Result<T, Box<dyn Error>>;

/// The model shipped in `weights/` (the repository's, or `$BRAINSAM_WEIGHTS`).
pub fn bundled_model() -> PathBuf {
    let dir = std::env::var_os("BRAINSAM_WEIGHTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../weights"));
    dir.join("brainsam-default.safetensors")
}

pub fn read(path: &Path) -> Res<Vec<u8>> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()).into())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `--focus` of segment, evaluate and convert.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FocusChoice {
    /// As the model was trained (its checkpoint's metadata).
    Auto,
    /// On the whole slice.
    Off,
    /// On a window around each prompt.
    Window(Focus),
}

/// `auto`, `off` or CONTEXT,MIN_SIDE (clap's value parser for `--focus`).
pub fn parse_focus(s: &str) -> Result<FocusChoice, String> {
    match s.trim() {
        "auto" => Ok(FocusChoice::Auto),
        "off" => Ok(FocusChoice::Off),
        s => {
            let bad = || "expected auto, off or CONTEXT,MIN_SIDE".to_string();
            let (c, m) = s.split_once(',').ok_or_else(bad)?;
            let f = Focus {
                context: c.trim().parse().map_err(|_| bad())?,
                min_side: m.trim().parse().map_err(|_| bad())?,
            };
            if !f.valid() {
                return Err("CONTEXT must be >= 1, MIN_SIDE > 0".into());
            }
            Ok(FocusChoice::Window(f))
        }
    }
}

impl FocusChoice {
    /// The focus to use with a model trained for `of_model`.
    pub fn resolve(self, of_model: Option<Focus>) -> Option<Focus> {
        match self {
            FocusChoice::Auto => of_model,
            FocusChoice::Off => None,
            FocusChoice::Window(f) => Some(f),
        }
    }
}

/// `--focus` and `--flip-average` of segment and evaluate.
#[derive(clap::Args, Debug, Clone)]
pub struct FocusArg {
    /// Where each prompt is predicted: `auto` (as the model was trained, from its
    /// checkpoint's metadata), `off` (on the whole slice), or CONTEXT,MIN_SIDE: on a square
    /// window of CONTEXT × the prompt's larger side (at least MIN_SIDE px) around the
    /// prompt, enlarged to the model input.
    #[arg(long = "focus", default_value = "auto", value_parser = parse_focus)]
    pub focus: FocusChoice,
    /// With a focus, also predict on each window's left-right mirror and average the two
    /// (twice the encoder time).
    #[arg(long)]
    pub flip_average: bool,
}

impl FocusArg {
    /// Sets the session's focus and flip averaging; refuses flip averaging without a focus.
    pub fn apply(&self, session: &mut Session, of_model: Option<Focus>) -> Res {
        let focus = self.checked(of_model)?;
        session.set_focus(focus);
        session.set_flip_average(self.flip_average);
        Ok(())
    }

    /// The focus to use, refusing flags that do not fit together (before any work).
    pub fn checked(&self, of_model: Option<Focus>) -> Res<Option<Focus>> {
        let focus = self.focus.resolve(of_model);
        if self.flip_average && focus.is_none() {
            return Err("--flip-average needs a focus (a windowed model or --focus C,M)".into());
        }
        Ok(focus)
    }
}

/// `--mask-threshold` of segment and evaluate.
#[derive(clap::Args, Debug, Clone)]
pub struct MaskThresholdArg {
    /// Where masks are cut: `auto` (the logit thresholds chosen for the model per kind of
    /// structure, from its file's metadata; 0 when it has none), `sam` (0, SAM's, for every
    /// structure), or a logit T for every structure.
    #[arg(
        long = "mask-threshold",
        default_value = "auto",
        allow_negative_numbers = true,
        value_parser = parse_mask_threshold
    )]
    pub mask_threshold: ThresholdChoice,
}

/// `--mask-threshold`'s value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThresholdChoice {
    /// As chosen for the model (its file's metadata).
    Auto,
    /// One threshold for every kind.
    Uniform(f32),
}

/// `auto`, `sam` or a logit (clap's value parser for `--mask-threshold`).
pub fn parse_mask_threshold(s: &str) -> Result<ThresholdChoice, String> {
    match s.trim() {
        "auto" => Ok(ThresholdChoice::Auto),
        "sam" => Ok(ThresholdChoice::Uniform(0.0)),
        v => {
            let t: f32 = v
                .parse()
                .map_err(|_| "expected auto, sam or a logit threshold".to_string())?;
            if !MaskThresholds::uniform(t).valid() {
                return Err(format!(
                    "a threshold must be a number within ±{}",
                    MaskThresholds::LIMIT
                ));
            }
            Ok(ThresholdChoice::Uniform(t))
        }
    }
}

impl MaskThresholdArg {
    /// The thresholds to cut a model's masks at, given what its file says.
    pub fn resolve(&self, of_model: Option<MaskThresholds>) -> Option<MaskThresholds> {
        match self.mask_threshold {
            ThresholdChoice::Auto => of_model,
            ThresholdChoice::Uniform(t) => Some(MaskThresholds::uniform(t)),
        }
    }
}

/// A model (default: the bundled one) with an optional adapter, merged for inference, and
/// what its file says about its use (focus, slice gap).
pub fn load_model(
    model: Option<&Path>,
    adapter: Option<&Path>,
    device: &Device,
) -> Res<(Sam, Geometry, ModelMeta)> {
    let path = model.map(Path::to_path_buf).unwrap_or_else(bundled_model);
    let bytes = read(&path)?;
    let adapter_bytes = adapter.map(read).transpose()?;
    // Each error names the file it is about.
    let loaded = io::load_model(&bytes, adapter_bytes.as_deref(), device).map_err(|e| match e {
        ModelFileError::Adapter(e) => format!("{}: {e}", adapter.unwrap_or(&path).display()),
        ModelFileError::Model(e) => format!("{}: {e}", path.display()),
        e => format!("{}: {e}", path.display()),
    })?;
    let LoadedModel {
        sam,
        geometry,
        meta,
        adapter: adapter_meta,
    } = loaded;
    if let (Some(a), Some(adapter_meta)) = (adapter, adapter_meta) {
        let hash = sha256_hex(&bytes);
        if adapter_meta.base_sha256 != hash {
            eprintln!(
                "warning: {} was trained on a base with sha256 {}, this one is {}",
                a.display(),
                adapter_meta.base_sha256,
                hash
            );
        }
    }
    Ok((sam, geometry, meta))
}

/// Label maps (FreeSurfer convention) of a folder, by file stem, sorted.
pub fn label_maps(dir: &Path, only: &[String]) -> Res<Vec<(String, PathBuf)>> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let n = p.file_name()?.to_str()?;
            let stem = n
                .strip_suffix(".nii.gz")
                .or_else(|| n.strip_suffix(".nii"))?;
            Some((stem.to_string(), p.clone()))
        })
        .filter(|(s, _)| only.is_empty() || only.iter().any(|o| o == s))
        .collect();
    v.sort();
    if v.is_empty() {
        return Err(format!(
            "no label maps (.nii/.nii.gz){} in {}",
            if only.is_empty() {
                String::new()
            } else {
                format!(" named {}", only.join(","))
            },
            dir.display()
        )
        .into());
    }
    Ok(v)
}

/// A FreeSurfer label map in canonical orientation, every label kept: synthesis needs the
/// whole anatomy (white matter, cortex, CSF...) to make a realistic image; the targets are
/// mapped to common ids only after synthesis.
pub fn load_label_map(path: &Path) -> Res<LabelVolume> {
    let l = read_labels(&read_file(path)?)?.volume;
    Ok(to_canonical(&l)?.0)
}

/// FreeSurfer labels → the common subcortical ids.
pub fn common(labels: &LabelVolume) -> LabelVolume {
    to_common(labels, Convention::FreeSurfer, false)
}

/// `--pairs DATASET:FOLDER`: a dataset's image+label pairs in its published layout.
#[derive(Debug, Clone, PartialEq)]
pub struct PairsSpec {
    pub dataset: Dataset,
    pub folder: PathBuf,
    /// As given, for the run's record.
    pub text: String,
}

/// Clap's value parser for `--pairs`.
pub fn parse_pairs(s: &str) -> Result<PairsSpec, String> {
    let (name, root) = s
        .split_once(':')
        .ok_or_else(|| "expected DATASET:FOLDER".to_string())?;
    Ok(PairsSpec {
        dataset: Dataset::parse(name).map_err(|e| e.to_string())?,
        folder: PathBuf::from(root),
        text: s.to_string(),
    })
}

/// Real (image, labels) pairs of a dataset, canonical, labels in common ids.
pub fn load_pairs(spec: &PairsSpec) -> Res<Vec<(String, Volume<f32>, LabelVolume)>> {
    let mut out = Vec::new();
    for pair in discover(spec.dataset, &spec.folder)? {
        let (image, labels) = pair.load()?;
        let Some(image) = image else { continue };
        out.push((
            pair.id.clone(),
            to_canonical(&image)?.0,
            to_canonical(&labels)?.0,
        ));
    }
    if out.is_empty() {
        return Err(format!("no image+label pairs found for {}", spec.text).into());
    }
    Ok(out)
}

/// `--labels`: common structure ids.
#[derive(Debug, Clone, PartialEq)]
pub struct Structures(pub Vec<i32>);

/// A comma list of common structure ids, or "all" for the sixteen (clap's value parser).
pub fn parse_structures(s: &str) -> Result<Structures, String> {
    if s == "all" {
        return Ok(Structures((1..=16).collect()));
    }
    s.split(',')
        .map(|t| {
            let v: i32 = t
                .trim()
                .parse()
                .map_err(|_| format!("bad structure id `{t}`"))?;
            brainsam::data::labels::structure(v)
                .map(|_| v)
                .ok_or_else(|| format!("structure id {v} is not one of 1..=16"))
        })
        .collect::<Result<_, _>>()
        .map(Structures)
}

/// Blocks on a future natively (the browser awaits instead).
pub trait AwaitNative: std::future::Future + Sized {
    fn await_native(self) -> Self::Output {
        pollster::block_on(self)
    }
}

impl<F: std::future::Future> AwaitNative for F {}

/// A real label map for the CLI's tests, looked up in the order of the library's
/// `data/testutil.rs`: `BRAINSAM_DATA`, else `../shared/data` beside the repository, else the
/// committed subset `tests/data` (which holds subject_13 cropped).
#[cfg(test)]
pub fn test_label_map(subject: &str) -> PathBuf {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = std::env::var_os("BRAINSAM_DATA")
        .map(PathBuf::from)
        .or_else(|| Some(repo.join("../shared/data")).filter(|d| d.join("label_maps").is_dir()))
        .unwrap_or_else(|| repo.join("tests/data"));
    let p = dir.join(format!("label_maps/{subject}.nii.gz"));
    assert!(p.is_file(), "label map not found: {}", p.display());
    p
}
