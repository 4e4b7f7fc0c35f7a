//! Test helpers: where the real test data and the Python cross-check scripts are.

use crate::data::Volume;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Repository root: found from this source file's location or the crate's manifest dir.
pub fn repo_root() -> PathBuf {
    let from_file = Path::new(file!()).ancestors().nth(4).map(Path::to_path_buf);
    let from_manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf);
    [from_file, from_manifest]
        .into_iter()
        .flatten()
        .find(|p| p.join("tests/data_pipeline").is_dir())
        .expect("cannot locate the repository root (tests/data_pipeline) from file!() or CARGO_MANIFEST_DIR")
}

/// Where the tests' real data comes from, tried in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataSource {
    /// `BRAINSAM_DATA`: the full set (`label_maps/subject_01..15`, `mri/`).
    Env,
    /// `<repo>/../shared/data`: the same full set beside the checkout.
    Shared,
    /// `<repo>/tests/data`: the committed subset (cropped subjects 01, 02, 13; see its README).
    Committed,
}

/// The data folder the tests read (it holds `label_maps/`, and `mri/` in the full set).
pub fn data_source() -> &'static (DataSource, PathBuf) {
    static SOURCE: OnceLock<(DataSource, PathBuf)> = OnceLock::new();
    SOURCE.get_or_init(|| {
        if let Some(dir) = std::env::var_os("BRAINSAM_DATA").map(PathBuf::from) {
            assert!(
                dir.join("label_maps").is_dir(),
                "BRAINSAM_DATA={} holds no label_maps/ (unset it to use ../shared/data or tests/data)",
                dir.display()
            );
            return (DataSource::Env, dir);
        }
        let shared = repo_root().join("../shared/data");
        if shared.join("label_maps").is_dir() {
            return (DataSource::Shared, shared);
        }
        let committed = repo_root().join("tests/data");
        assert!(
            committed.join("label_maps").is_dir(),
            "committed test data missing at {}",
            committed.display()
        );
        (DataSource::Committed, committed)
    })
}

/// Data root: `BRAINSAM_DATA`, else `<repo>/../shared/data`, else `<repo>/tests/data`.
pub fn data_dir() -> PathBuf {
    data_source().1.clone()
}

/// Whether the full set is in use (else the committed subset).
pub fn full_set() -> bool {
    data_source().0 != DataSource::Committed
}

/// A label map; fails with a clear message when the data source lacks it, so that a
/// data-dependent test fails rather than silently passes.
pub fn label_map_path(subject: u32) -> PathBuf {
    let p = data_dir().join(format!("label_maps/subject_{subject:02}.nii.gz"));
    assert!(
        p.is_file(),
        "label map {} not found (the committed subset holds subjects 01, 02, 13; \
         others need BRAINSAM_DATA or ../shared/data)",
        p.display()
    );
    p
}

/// Every real T1 image present: the full set's `mri/t1_sample.nii.gz` and
/// `mri/mni152_2009a_t1.nii.gz`, else the MNI152 template `scripts/setup.sh` fetches into
/// `target/web-cache/`. Fails when there is none.
pub fn real_t1_paths() -> Vec<PathBuf> {
    let mri = data_dir().join("mri");
    let mut found: Vec<PathBuf> = ["t1_sample.nii.gz", "mni152_2009a_t1.nii.gz"]
        .iter()
        .map(|f| mri.join(f))
        .filter(|p| p.is_file())
        .collect();
    let fetched = repo_root().join("target/web-cache/mni152_t1.nii.gz");
    if !found.iter().any(|p| p.ends_with("mni152_2009a_t1.nii.gz")) && fetched.is_file() {
        found.push(fetched.clone());
    }
    assert!(
        !found.is_empty(),
        "no real T1 image in {} nor {}: run scripts/setup.sh (it fetches the MNI152 template) \
         or set BRAINSAM_DATA",
        mri.display(),
        fetched.display()
    );
    found
}

pub fn read_bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// `BRAINSAM_PYTHON`, else the venv `npm test` sets up (`<repo>/.venv`), else `python3`.
fn python() -> String {
    if let Ok(py) = std::env::var("BRAINSAM_PYTHON") {
        return py;
    }
    let venv = repo_root().join(".venv/bin/python");
    if venv.is_file() {
        return venv.to_string_lossy().into_owned();
    }
    "python3".into()
}

/// Runs `tests/data_pipeline/<script>` and returns its stdout. Panics with a clear message
/// when Python or nibabel is missing.
fn python_output(script: &str, args: &[&str]) -> Vec<u8> {
    let py = python();
    let path = repo_root().join("tests/data_pipeline").join(script);
    let out = Command::new(&py)
        .arg(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {py} (set BRAINSAM_PYTHON): {e}"));
    assert!(
        out.status.success(),
        "{} failed (needs numpy + nibabel; set BRAINSAM_PYTHON):\n{}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs a script that prints JSON and parses it.
pub fn python_json(script: &str, args: &[&str]) -> serde_json::Value {
    serde_json::from_slice(&python_output(script, args)).expect("script printed invalid JSON")
}

/// Runs a script that writes files, without JSON output.
pub fn python_run(script: &str, args: &[&str]) {
    python_output(script, args);
}

/// A fresh scratch directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("brainsam-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("cannot create temp dir");
    d
}

/// nibabel-written fixtures, generated once per test process.
pub fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = temp_dir("fixtures");
        python_run("make_fixtures.py", &[d.to_str().expect("utf-8 temp path")]);
        d
    })
}

/// A fixture file and the JSON its writer's library read back (`NAME.json`: shape, affine,
/// values x fastest).
pub fn fixture_with_meta(name: &str) -> (Vec<u8>, serde_json::Value) {
    let bytes = read_bytes(&fixtures().join(name));
    let json = read_bytes(&fixtures().join(format!("{name}.json")));
    (bytes, serde_json::from_slice(&json).expect("fixture json"))
}

/// A volume read by us equals its fixture's JSON: shape, affine within `tol`, every value
/// (as f32, the volume's type).
pub fn check_fixture(tol: f64, name: &str, got: &Volume<f32>, want: &serde_json::Value) {
    let shape: Vec<usize> = want["shape"]
        .as_array()
        .expect("shape")
        .iter()
        .map(|v| v.as_u64().expect("size") as usize)
        .collect();
    assert_eq!(got.dims.to_vec(), shape, "{name}");
    assert_affine_close(&got.affine, &json_affine(&want["affine"]), tol);
    let values = want["values"].as_array().expect("values");
    assert_eq!(got.data.len(), values.len(), "{name}");
    for (a, b) in got.data.iter().zip(values) {
        assert_eq!(*a, b.as_f64().expect("value") as f32, "{name}");
    }
}

pub fn json_affine(v: &serde_json::Value) -> [[f64; 4]; 4] {
    let mut a = [[0.0; 4]; 4];
    for (i, row) in a.iter_mut().enumerate() {
        for (j, x) in row.iter_mut().enumerate() {
            *x = v[i][j].as_f64().expect("affine entry");
        }
    }
    a
}

pub fn assert_affine_close(a: &[[f64; 4]; 4], b: &[[f64; 4]; 4], tol: f64) {
    for i in 0..4 {
        for j in 0..4 {
            assert!(
                (a[i][j] - b[i][j]).abs() <= tol,
                "affines differ:\n{a:?}\n{b:?}"
            );
        }
    }
}
