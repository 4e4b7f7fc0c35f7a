//! The values a pickle builds: Python's scalars and containers, the globals it names, and
//! torch's storages and tensors as references into the archive.

use std::rc::Rc;

use super::PthDType;

/// A pickled value. Containers are reference-counted so that memo lookups do
/// not copy (and cannot blow up); they are copied on write.
#[derive(Debug, Clone)]
#[allow(dead_code)] // scalar payloads are parsed faithfully but not consumed
pub(super) enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Tuple(Rc<Nested<Value>>),
    List(Rc<Nested<Value>>),
    Dict(Rc<Nested<(Value, Value)>>),
    Global(Rc<str>, Rc<str>),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
    /// Result of calling a global we do not model; kept opaque.
    Object,
}

/// Container items plus nesting depth, tracked so that a hostile pickle
/// cannot build structures deep enough to overflow the stack when dropped.
#[derive(Debug, Clone)]
pub(super) struct Nested<T> {
    pub(super) items: Vec<T>,
    pub(super) depth: u32,
}

impl<T> Nested<T> {
    pub(super) fn empty() -> Rc<Self> {
        Rc::new(Nested {
            items: Vec::new(),
            depth: 1,
        })
    }
}

/// Deepest container nesting accepted (torch checkpoints use a handful).
pub(super) const MAX_NESTING: u32 = 256;

impl Value {
    pub(super) fn depth(&self) -> u32 {
        match self {
            Value::Tuple(n) | Value::List(n) => n.depth,
            Value::Dict(n) => n.depth,
            _ => 0,
        }
    }
}

/// A storage, by persistent id: element type, entry key (`data/<key>`), element count.
#[derive(Debug)]
pub(super) struct StorageRef {
    pub(super) dtype: PthDType,
    pub(super) key: String,
    pub(super) numel: u64,
}

/// A `_rebuild_tensor_v2` call: a strided view of a storage.
#[derive(Debug)]
pub(super) struct TensorRef {
    pub(super) storage: Rc<StorageRef>,
    pub(super) offset: u64,
    pub(super) size: Vec<u64>,
    pub(super) stride: Vec<u64>,
}
