//! The zip archive `torch.save` writes: finds `data.pkl`, picks the state dict out of the
//! unpickled object, and gathers each tensor from its `data/<key>` storage entry.

use std::collections::HashMap;
use std::io::{Cursor, Read};

use super::pickle::unpickle;
use super::value::{TensorRef, Value};
use super::{PthError, PthTensor};

/// Largest tensor or pickle accepted (bytes); beyond that the file is refused
/// before allocating.
const MAX_BYTES: u64 = 1 << 34;
/// Largest `data.pkl` accepted; real ones are kilobytes.
pub(super) const MAX_PICKLE_BYTES: u64 = 1 << 28;

/// Reads every tensor of a `torch.save`d state dict (top level, or nested
/// under `"state_dict"` or `"model"`), in pickle order.
pub fn read_pth(bytes: &[u8]) -> Result<Vec<PthTensor>, PthError> {
    if !bytes.starts_with(b"PK") {
        // Legacy torch files begin with a pickled magic number (protocol 2).
        if bytes.first() == Some(&0x80) {
            return Err(PthError::Legacy);
        }
        return Err(PthError::NotZip("missing zip signature".into()));
    }
    let mut zip =
        zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| PthError::Zip(e.to_string()))?;
    let pkl_name = zip
        .file_names()
        .filter(|n| *n == "data.pkl" || n.ends_with("/data.pkl"))
        .min_by_key(|n| n.len())
        .map(str::to_owned)
        .ok_or(PthError::MissingPickle)?;
    let prefix = &pkl_name[..pkl_name.len() - "data.pkl".len()];
    let pickle = read_entry(&mut zip, &pkl_name, MAX_PICKLE_BYTES)?;
    let root = unpickle(&pickle)?;

    let dict = select_state_dict(&root).ok_or(PthError::NoTensors)?;
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut out = Vec::new();
    for (k, v) in dict.iter() {
        let (Value::Str(name), Value::Tensor(t)) = (k, v) else {
            continue;
        };
        out.push(gather(name, t, prefix, &mut zip, &mut storages)?);
    }
    if out.is_empty() {
        return Err(PthError::NoTensors);
    }
    Ok(out)
}

fn has_tensors(d: &[(Value, Value)]) -> bool {
    d.iter().any(|(_, v)| matches!(v, Value::Tensor(_)))
}

/// The state dict in the unpickled object: the top-level dict when it holds tensors, or
/// the one under `"state_dict"` or `"model"`.
pub(super) fn select_state_dict(root: &Value) -> Option<&[(Value, Value)]> {
    let Value::Dict(d) = root else {
        return None;
    };
    if has_tensors(&d.items) {
        return Some(&d.items);
    }
    for key in ["state_dict", "model"] {
        let nested = d.items.iter().find_map(|(k, v)| match (k, v) {
            (Value::Str(s), Value::Dict(inner)) if &**s == key && has_tensors(&inner.items) => {
                Some(&inner.items)
            }
            _ => None,
        });
        if let Some(inner) = nested {
            return Some(inner);
        }
    }
    None
}

/// One archive entry, read up to `limit` bytes.
pub(super) fn read_entry(
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    name: &str,
    limit: u64,
) -> Result<Vec<u8>, PthError> {
    let file = zip
        .by_name(name)
        .map_err(|e| PthError::Zip(format!("{name}: {e}")))?;
    let mut buf = Vec::new();
    // Bounded read: a corrupt header cannot make us allocate without limit.
    file.take(limit)
        .read_to_end(&mut buf)
        .map_err(|e| PthError::Zip(format!("{name}: {e}")))?;
    Ok(buf)
}

/// A tensor's elements, gathered from its storage entry (read once per storage) into
/// contiguous row-major bytes; shape, strides and offset are checked against the storage.
fn gather(
    name: &str,
    t: &TensorRef,
    prefix: &str,
    zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
    storages: &mut HashMap<String, Vec<u8>>,
) -> Result<PthTensor, PthError> {
    let terr = |msg: String| PthError::Tensor {
        name: name.to_string(),
        msg,
    };
    let dtype = t.storage.dtype;
    let esize = dtype.size() as u64;
    let storage_bytes = t
        .storage
        .numel
        .checked_mul(esize)
        .filter(|&b| b <= MAX_BYTES)
        .ok_or_else(|| terr(format!("absurd storage size {} elements", t.storage.numel)))?;

    let numel = t
        .size
        .iter()
        .try_fold(1u64, |a, &s| a.checked_mul(s))
        .filter(|&n| n.saturating_mul(esize) <= MAX_BYTES)
        .ok_or_else(|| terr(format!("absurd shape {:?}", t.size)))?;
    // Highest element touched; must lie inside the storage.
    if numel > 0 {
        let last = t
            .size
            .iter()
            .zip(&t.stride)
            .try_fold(t.offset, |a, (&s, &st)| {
                a.checked_add((s - 1).checked_mul(st)?)
            })
            .ok_or_else(|| terr("offset/stride overflow".into()))?;
        if last >= t.storage.numel {
            return Err(terr(format!(
                "shape {:?} stride {:?} offset {} exceeds storage of {} elements",
                t.size, t.stride, t.offset, t.storage.numel
            )));
        }
    }

    let key = &t.storage.key;
    if !storages.contains_key(key) {
        let entry = format!("{prefix}data/{key}");
        if zip.index_for_name(&entry).is_none() {
            return Err(PthError::MissingStorage {
                tensor: name.to_string(),
                entry,
            });
        }
        let data = read_entry(zip, &entry, storage_bytes)?;
        if (data.len() as u64) < storage_bytes {
            return Err(terr(format!(
                "storage {entry} has {} bytes, expected {storage_bytes}",
                data.len()
            )));
        }
        storages.insert(key.clone(), data);
    }
    let storage = storages
        .get(key)
        .ok_or_else(|| terr("storage vanished".into()))?;

    let es = esize as usize;
    let shape: Vec<usize> = t
        .size
        .iter()
        .map(|&s| usize::try_from(s))
        .collect::<Result<_, _>>()
        .map_err(|_| terr("shape too large for this platform".into()))?;
    let n = usize::try_from(numel).map_err(|_| terr("tensor too large".into()))?;
    let mut data = Vec::with_capacity(n * es);
    // Bounds were checked above; `get` keeps a bad file from panicking anyway.
    let copy = |elem: u64, data: &mut Vec<u8>| -> Result<(), PthError> {
        let src = elem
            .checked_mul(esize)
            .and_then(|s| usize::try_from(s).ok())
            .and_then(|s| storage.get(s..s.checked_add(es)?))
            .ok_or_else(|| terr(format!("element {elem} outside storage")))?;
        data.extend_from_slice(src);
        Ok(())
    };
    if n > 0 {
        // Odometer over the index space, row-major.
        let mut idx = vec![0u64; t.size.len()];
        let mut elem = t.offset;
        for _ in 0..n {
            copy(elem, &mut data)?;
            for d in (0..idx.len()).rev() {
                // Wrapping: a size-1 dim may carry a huge, never-used stride.
                idx[d] += 1;
                elem = elem.wrapping_add(t.stride[d]);
                if idx[d] < t.size[d] {
                    break;
                }
                elem = elem.wrapping_sub(t.stride[d].wrapping_mul(t.size[d]));
                idx[d] = 0;
            }
        }
    }
    Ok(PthTensor {
        name: name.to_string(),
        shape,
        dtype,
        data,
    })
}
