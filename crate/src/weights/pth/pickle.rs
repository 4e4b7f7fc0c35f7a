//! In-memory reader for PyTorch `.pth` checkpoints (the zip format written by
//! `torch.save` since torch 1.6). No filesystem access, so it works in wasm.
//!
//! The archive holds `<prefix>/data.pkl`, a pickle describing the object, and
//! `<prefix>/data/<key>` raw storages. A small pickle machine evaluates just
//! what `torch.save` emits; tensors come out as `_rebuild_tensor_v2` calls on
//! persistent-id storages and are gathered here into contiguous row-major data.

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::rc::Rc;

use thiserror::Error;

/// Element type of a tensor, as named by torch's storage classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PthDType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl PthDType {
    pub fn size(self) -> usize {
        match self {
            PthDType::F64 | PthDType::I64 => 8,
            PthDType::F32 | PthDType::I32 => 4,
            PthDType::F16 | PthDType::BF16 | PthDType::I16 => 2,
            PthDType::I8 | PthDType::U8 | PthDType::Bool => 1,
        }
    }

    fn from_storage_name(name: &str) -> Option<Self> {
        Some(match name {
            "DoubleStorage" => PthDType::F64,
            "FloatStorage" => PthDType::F32,
            "HalfStorage" => PthDType::F16,
            "BFloat16Storage" => PthDType::BF16,
            "LongStorage" => PthDType::I64,
            "IntStorage" => PthDType::I32,
            "ShortStorage" => PthDType::I16,
            "CharStorage" => PthDType::I8,
            "ByteStorage" => PthDType::U8,
            "BoolStorage" => PthDType::Bool,
            _ => return None,
        })
    }
}

/// One tensor of the state dict, gathered to contiguous little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct PthTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: PthDType,
    pub data: Vec<u8>,
}

impl PthTensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Values converted to f32 (integers and bools numerically).
    pub fn to_f32(&self) -> Result<Vec<f32>, PthError> {
        let size = self.dtype.size();
        if self.data.len() != self.numel() * size {
            return Err(PthError::Tensor {
                name: self.name.clone(),
                msg: format!(
                    "{} data bytes for shape {:?} of {:?}",
                    self.data.len(),
                    self.shape,
                    self.dtype
                ),
            });
        }
        let c = self.data.chunks_exact(size);
        Ok(match self.dtype {
            PthDType::F32 => c
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            PthDType::F64 => c
                .map(|b| {
                    f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
                })
                .collect(),
            PthDType::F16 => c
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            PthDType::BF16 => c
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            PthDType::I64 => c
                .map(|b| {
                    i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
                })
                .collect(),
            PthDType::I32 => c
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
                .collect(),
            PthDType::I16 => c.map(|b| i16::from_le_bytes([b[0], b[1]]) as f32).collect(),
            PthDType::I8 => c.map(|b| b[0] as i8 as f32).collect(),
            PthDType::U8 => c.map(|b| b[0] as f32).collect(),
            PthDType::Bool => c.map(|b| if b[0] != 0 { 1.0 } else { 0.0 }).collect(),
        })
    }
}

#[derive(Debug, Error)]
pub enum PthError {
    #[error("legacy (pre-1.6, non-zip) torch checkpoint; re-save it with a newer torch: torch.save(torch.load(path), path)")]
    Legacy,
    #[error("not a torch checkpoint: {0}")]
    NotZip(String),
    #[error("zip archive: {0}")]
    Zip(String),
    #[error("archive has no data.pkl entry")]
    MissingPickle,
    #[error("pickle: unknown opcode 0x{opcode:02x} at byte {pos}")]
    UnknownOpcode { opcode: u8, pos: usize },
    #[error("pickle: truncated inside opcode 0x{opcode:02x} at byte {pos}")]
    Truncated { opcode: u8, pos: usize },
    #[error("pickle: opcode 0x{opcode:02x} at byte {pos}: {msg}")]
    Pickle { opcode: u8, pos: usize, msg: String },
    #[error("pickle ended without STOP")]
    NoStop,
    #[error("unsupported storage type torch.{0}")]
    UnsupportedStorage(String),
    #[error("tensor {tensor}: storage entry {entry} missing from archive")]
    MissingStorage { tensor: String, entry: String },
    #[error("tensor {name}: {msg}")]
    Tensor { name: String, msg: String },
    #[error("checkpoint holds no tensors")]
    NoTensors,
}

/// Largest tensor or pickle accepted (bytes); beyond that the file is refused
/// before allocating.
const MAX_BYTES: u64 = 1 << 34;
/// Largest `data.pkl` accepted; real ones are kilobytes.
const MAX_PICKLE_BYTES: u64 = 1 << 28;

/// A pickled value. Containers are reference-counted so that memo lookups do
/// not copy (and cannot blow up); they are copied on write.
#[derive(Debug, Clone)]
#[allow(dead_code)] // scalar payloads are parsed faithfully but not consumed
enum Value {
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
struct Nested<T> {
    items: Vec<T>,
    depth: u32,
}

impl<T> Nested<T> {
    fn empty() -> Rc<Self> {
        Rc::new(Nested {
            items: Vec::new(),
            depth: 1,
        })
    }
}

/// Deepest container nesting accepted (torch checkpoints use a handful).
const MAX_NESTING: u32 = 256;

impl Value {
    fn depth(&self) -> u32 {
        match self {
            Value::Tuple(n) | Value::List(n) => n.depth,
            Value::Dict(n) => n.depth,
            _ => 0,
        }
    }
}

#[derive(Debug)]
struct StorageRef {
    dtype: PthDType,
    key: String,
    numel: u64,
}

#[derive(Debug)]
struct TensorRef {
    storage: Rc<StorageRef>,
    offset: u64,
    size: Vec<u64>,
    stride: Vec<u64>,
}

struct Machine<'a> {
    code: &'a [u8],
    pos: usize,
    op: u8,
    op_pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
}

impl<'a> Machine<'a> {
    fn err(&self, msg: impl Into<String>) -> PthError {
        PthError::Pickle {
            opcode: self.op,
            pos: self.op_pos,
            msg: msg.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PthError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.code.len());
        let Some(end) = end else {
            return Err(PthError::Truncated {
                opcode: self.op,
                pos: self.op_pos,
            });
        };
        let s = &self.code[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, PthError> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> Result<[u8; N], PthError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn line(&mut self) -> Result<&'a str, PthError> {
        let rest = &self.code[self.pos.min(self.code.len())..];
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return Err(PthError::Truncated {
                opcode: self.op,
                pos: self.op_pos,
            });
        };
        let s = self.take(n + 1)?;
        std::str::from_utf8(&s[..n]).map_err(|_| self.err("non-UTF-8 text"))
    }

    fn len(&mut self, n: u64) -> Result<usize, PthError> {
        let n = usize::try_from(n).map_err(|_| self.err("length too large"))?;
        if n > self.code.len() - self.pos.min(self.code.len()) {
            return Err(PthError::Truncated {
                opcode: self.op,
                pos: self.op_pos,
            });
        }
        Ok(n)
    }

    fn string(&mut self, n: u64) -> Result<Value, PthError> {
        let n = self.len(n)?;
        let b = self.take(n)?;
        let s = std::str::from_utf8(b).map_err(|_| self.err("invalid UTF-8 string"))?;
        Ok(Value::Str(s.into()))
    }

    fn bytes(&mut self, n: u64) -> Result<Value, PthError> {
        let n = self.len(n)?;
        Ok(Value::Bytes(self.take(n)?.into()))
    }

    fn pop(&mut self) -> Result<Value, PthError> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            return Err(self.err("stack underflow"));
        }
        self.stack.pop().ok_or_else(|| self.err("stack underflow"))
    }

    fn top(&mut self) -> Result<&mut Value, PthError> {
        let err = self.err("stack underflow");
        self.stack.last_mut().ok_or(err)
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, PthError> {
        let Some(m) = self.marks.pop() else {
            return Err(self.err("no MARK on the stack"));
        };
        if m > self.stack.len() {
            return Err(self.err("MARK beyond stack"));
        }
        Ok(self.stack.split_off(m))
    }

    fn memo_get(&self, k: u64) -> Result<Value, PthError> {
        self.memo
            .get(&k)
            .cloned()
            .ok_or_else(|| self.err(format!("memo key {k} not set")))
    }

    fn memo_put(&mut self, k: u64) -> Result<(), PthError> {
        let v = self
            .stack
            .last()
            .cloned()
            .ok_or_else(|| self.err("stack underflow"))?;
        self.memo.insert(k, v);
        Ok(())
    }

    fn nested(&self, items: Vec<Value>) -> Result<Rc<Nested<Value>>, PthError> {
        let depth = 1 + items.iter().map(Value::depth).max().unwrap_or(0);
        if depth > MAX_NESTING {
            return Err(self.err("containers nested too deeply"));
        }
        Ok(Rc::new(Nested { items, depth }))
    }

    fn set_items(&mut self, items: Vec<Value>) -> Result<(), PthError> {
        if items.len() & 1 == 1 {
            return Err(self.err("odd number of dict items"));
        }
        let err = self.err("SETITEM(S) target is not a dict");
        let too_deep = self.err("containers nested too deeply");
        match self.top()? {
            Value::Dict(d) => {
                let d = Rc::make_mut(d);
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    d.depth = d.depth.max(1 + k.depth().max(v.depth()));
                    d.items.push((k, v));
                }
                if d.depth > MAX_NESTING {
                    return Err(too_deep);
                }
                Ok(())
            }
            Value::Object => Ok(()),
            _ => Err(err),
        }
    }

    fn append(&mut self, items: Vec<Value>) -> Result<(), PthError> {
        let err = self.err("APPEND(S) target is not a list");
        let too_deep = self.err("containers nested too deeply");
        match self.top()? {
            Value::List(l) => {
                let l = Rc::make_mut(l);
                let deepest = items.iter().map(Value::depth).max().unwrap_or(0);
                l.depth = l.depth.max(1 + deepest);
                l.items.extend(items);
                if l.depth > MAX_NESTING {
                    return Err(too_deep);
                }
                Ok(())
            }
            Value::Object => Ok(()),
            _ => Err(err),
        }
    }

    fn run(mut self) -> Result<Value, PthError> {
        while self.pos < self.code.len() {
            self.op_pos = self.pos;
            self.op = self.code[self.pos];
            self.pos += 1;
            match self.op {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.le::<8>()?; // FRAME: a length hint only
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'J' => {
                    let v = i32::from_le_bytes(self.le()?);
                    self.stack.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.le()?);
                    self.stack.push(Value::Int(v as i64));
                }
                0x8a | 0x8b => {
                    let n = if self.op == 0x8a {
                        self.u8()? as u64
                    } else {
                        u32::from_le_bytes(self.le()?) as u64
                    };
                    let n = self.len(n)?;
                    let b = self.take(n)?;
                    if n > 8 {
                        return Err(self.err("integer wider than 64 bits"));
                    }
                    let mut v: i64 = 0;
                    for (i, &byte) in b.iter().enumerate() {
                        v |= (byte as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n); // two's complement sign
                    }
                    self.stack.push(Value::Int(v));
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.le()?);
                    self.stack.push(Value::Float(v));
                }
                b'X' => {
                    let n = u32::from_le_bytes(self.le()?) as u64;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                0x8c => {
                    let n = self.u8()? as u64;
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                0x8d => {
                    let n = u64::from_le_bytes(self.le()?);
                    let v = self.string(n)?;
                    self.stack.push(v);
                }
                b'T' | b'B' => {
                    let n = u32::from_le_bytes(self.le()?) as u64;
                    let v = self.bytes(n)?;
                    self.stack.push(v);
                }
                b'U' | b'C' => {
                    let n = self.u8()? as u64;
                    let v = self.bytes(n)?;
                    self.stack.push(v);
                }
                0x8e => {
                    let n = u64::from_le_bytes(self.le()?);
                    let v = self.bytes(n)?;
                    self.stack.push(v);
                }
                b')' => self.stack.push(Value::Tuple(Nested::empty())),
                b']' => self.stack.push(Value::List(Nested::empty())),
                b'}' => self.stack.push(Value::Dict(Nested::empty())),
                0x8f => self.stack.push(Value::List(Nested::empty())), // EMPTY_SET
                b't' => {
                    let items = self.pop_mark()?;
                    let t = self.nested(items)?;
                    self.stack.push(Value::Tuple(t));
                }
                0x85..=0x87 => {
                    let n = (self.op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    let t = self.nested(items)?;
                    self.stack.push(Value::Tuple(t));
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    let l = self.nested(items)?;
                    self.stack.push(Value::List(l));
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Dict(Nested::empty()));
                    self.set_items(items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                b'a' => {
                    let v = self.pop()?;
                    self.append(vec![v])?;
                }
                b'e' | 0x90 => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self
                        .stack
                        .last()
                        .cloned()
                        .ok_or_else(|| self.err("stack underflow"))?;
                    self.stack.push(v);
                }
                b'q' => {
                    let k = self.u8()? as u64;
                    self.memo_put(k)?;
                }
                b'r' => {
                    let k = u32::from_le_bytes(self.le()?) as u64;
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }
                b'p' => {
                    let k = self.line()?.parse().map_err(|_| self.err("bad PUT key"))?;
                    self.memo_put(k)?;
                }
                b'h' => {
                    let k = self.u8()? as u64;
                    let v = self.memo_get(k)?;
                    self.stack.push(v);
                }
                b'j' => {
                    let k = u32::from_le_bytes(self.le()?) as u64;
                    let v = self.memo_get(k)?;
                    self.stack.push(v);
                }
                b'g' => {
                    let k = self.line()?.parse().map_err(|_| self.err("bad GET key"))?;
                    let v = self.memo_get(k)?;
                    self.stack.push(v);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(Value::Global(module.into(), name.into()));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => self.stack.push(Value::Global(m, n)),
                        _ => return Err(self.err("STACK_GLOBAL needs two strings")),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.stack.push(v);
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let v = self.call(func, args)?;
                    self.stack.push(v);
                }
                b'b' => {
                    // BUILD sets state (e.g. OrderedDict._metadata); not needed.
                    self.pop()?;
                    self.top()?;
                }
                op => {
                    return Err(PthError::UnknownOpcode {
                        opcode: op,
                        pos: self.op_pos,
                    })
                }
            }
        }
        Err(PthError::NoStop)
    }

    /// `('storage', torch.<Type>Storage, key, location, numel)`.
    fn persistent_load(&self, pid: Value) -> Result<Value, PthError> {
        let Value::Tuple(t) = pid else {
            return Err(self.err("persistent id is not a tuple"));
        };
        match t.items.as_slice() {
            [Value::Str(kind), Value::Global(_, ty), key, _location, Value::Int(numel), ..]
                if &**kind == "storage" =>
            {
                let dtype = PthDType::from_storage_name(ty)
                    .ok_or_else(|| PthError::UnsupportedStorage(ty.to_string()))?;
                let key = match key {
                    Value::Str(s) => s.to_string(),
                    Value::Int(i) => i.to_string(),
                    _ => return Err(self.err("storage key is not a string")),
                };
                let numel = u64::try_from(*numel).map_err(|_| self.err("negative storage size"))?;
                Ok(Value::Storage(Rc::new(StorageRef { dtype, key, numel })))
            }
            _ => Err(self.err("persistent id is not ('storage', type, key, location, numel)")),
        }
    }

    fn call(&self, func: Value, args: Value) -> Result<Value, PthError> {
        let Value::Global(module, name) = &func else {
            return Ok(Value::Object);
        };
        let args: &[Value] = match &args {
            Value::Tuple(t) => &t.items,
            _ => return Err(self.err("call arguments are not a tuple")),
        };
        match (&**module, &**name) {
            ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => self.rebuild_tensor(args),
            ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => args
                .first()
                .cloned()
                .ok_or_else(|| self.err("_rebuild_parameter without data")),
            ("torch._tensor", "_rebuild_from_type_v2") => match args {
                // Only torch's own rebuild functions are followed (no recursion
                // through arbitrary nesting).
                [f @ Value::Global(m, _), _ty, Value::Tuple(inner), ..]
                    if &**m == "torch._utils" =>
                {
                    self.call(f.clone(), Value::Tuple(inner.clone()))
                }
                [_, _, Value::Tuple(_), ..] => Ok(Value::Object),
                _ => Err(self.err("bad _rebuild_from_type_v2 arguments")),
            },
            ("collections", "OrderedDict") | ("builtins", "dict") => {
                Ok(Value::Dict(Nested::empty()))
            }
            _ => Ok(Value::Object),
        }
    }

    fn rebuild_tensor(&self, args: &[Value]) -> Result<Value, PthError> {
        let ints = |v: &Value, what: &str| -> Result<Vec<u64>, PthError> {
            let Value::Tuple(t) = v else {
                return Err(self.err(format!("tensor {what} is not a tuple")));
            };
            t.items
                .iter()
                .map(|x| match x {
                    Value::Int(i) if *i >= 0 => Ok(*i as u64),
                    _ => {
                        Err(self.err(format!("tensor {what} has a non-integer or negative entry")))
                    }
                })
                .collect()
        };
        match args {
            [Value::Storage(s), Value::Int(offset), size, stride, ..] => {
                let size = ints(size, "size")?;
                let stride = ints(stride, "stride")?;
                if size.len() != stride.len() {
                    return Err(self.err("tensor size and stride lengths differ"));
                }
                let offset =
                    u64::try_from(*offset).map_err(|_| self.err("negative storage offset"))?;
                Ok(Value::Tensor(Rc::new(TensorRef {
                    storage: s.clone(),
                    offset,
                    size,
                    stride,
                })))
            }
            _ => Err(self.err("bad _rebuild_tensor_v2 arguments")),
        }
    }
}

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

fn unpickle(code: &[u8]) -> Result<Value, PthError> {
    Machine {
        code,
        pos: 0,
        op: 0,
        op_pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    }
    .run()
}

fn has_tensors(d: &[(Value, Value)]) -> bool {
    d.iter().any(|(_, v)| matches!(v, Value::Tensor(_)))
}

fn select_state_dict(root: &Value) -> Option<&[(Value, Value)]> {
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

fn read_entry(
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

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::SafeTensors;
    use std::path::PathBuf;

    /// Fixtures written by `tests/weights/gen_*_fixtures.py`.
    fn data_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/pth")
    }

    fn load(name: &str) -> Vec<u8> {
        let p = data_dir().join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn st_dtype(d: safetensors::Dtype) -> PthDType {
        use safetensors::Dtype as D;
        match d {
            D::F64 => PthDType::F64,
            D::F32 => PthDType::F32,
            D::F16 => PthDType::F16,
            D::BF16 => PthDType::BF16,
            D::I64 => PthDType::I64,
            D::I32 => PthDType::I32,
            D::I16 => PthDType::I16,
            D::I8 => PthDType::I8,
            D::U8 => PthDType::U8,
            D::BOOL => PthDType::Bool,
            other => panic!("unexpected dtype {other:?}"),
        }
    }

    /// Every tensor of `<case>.pth` equals the safetensors copy byte for byte,
    /// with the same names (and no others).
    fn check_case(case: &str) -> usize {
        let got = read_pth(&load(&format!("{case}.pth"))).unwrap();
        let exp_bytes = load(&format!("{case}.safetensors"));
        let exp = SafeTensors::deserialize(&exp_bytes).unwrap();
        let mut names: Vec<_> = got.iter().map(|t| t.name.clone()).collect();
        names.sort();
        let mut want: Vec<String> = exp.names().iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(names, want, "{case}: tensor names");
        for t in &got {
            let e = exp.tensor(&t.name).unwrap();
            assert_eq!(t.shape, e.shape(), "{case}/{}: shape", t.name);
            assert_eq!(t.dtype, st_dtype(e.dtype()), "{case}/{}: dtype", t.name);
            assert_eq!(t.data, e.data(), "{case}/{}: data", t.name);
            assert_eq!(t.numel(), e.shape().iter().product::<usize>());
        }
        got.len()
    }

    #[test]
    fn all_dtypes_match_safetensors() {
        assert_eq!(check_case("dtypes"), 10);
    }

    #[test]
    fn to_f32_matches_torch_float_conversion() {
        let got = read_pth(&load("dtypes.pth")).unwrap();
        let exp_bytes = load("dtypes_f32.safetensors");
        let exp = SafeTensors::deserialize(&exp_bytes).unwrap();
        let mut checked = 0;
        for t in got.iter().filter(|t| t.dtype != PthDType::Bool) {
            let e = exp.tensor(&t.name).unwrap();
            let want: Vec<f32> = e
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            assert_eq!(t.to_f32().unwrap(), want, "{}", t.name);
            checked += 1;
        }
        assert_eq!(checked, 9);
        let b = got.iter().find(|t| t.name == "bool").unwrap();
        assert_eq!(b.to_f32().unwrap(), vec![1.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn strided_offset_shared_and_parameter_tensors_are_gathered() {
        assert_eq!(check_case("views"), 10);
    }

    #[test]
    fn state_dict_nested_under_model_or_state_dict_loses_prefix() {
        assert_eq!(check_case("nested_model"), 2);
        assert_eq!(check_case("nested_state_dict"), 2);
    }

    #[test]
    fn module_state_dict_with_metadata_in_protocols_2_and_4() {
        let n = check_case("module");
        assert_eq!(n, 11);
        assert_eq!(check_case("module_proto4"), n);
    }

    #[test]
    fn deflate_compressed_entries_are_read() {
        assert_eq!(check_case("module_deflate"), 11);
    }

    #[test]
    fn zero_dim_tensors_have_empty_shape() {
        assert_eq!(check_case("scalar"), 3);
        let got = read_pth(&load("scalar.pth")).unwrap();
        let s = got.iter().find(|t| t.name == "s").unwrap();
        assert!(s.shape.is_empty());
        assert_eq!(s.to_f32().unwrap(), vec![3.5]);
    }

    #[test]
    fn legacy_format_asks_to_resave() {
        let err = read_pth(&load("legacy.pth")).unwrap_err();
        assert!(matches!(err, PthError::Legacy), "{err}");
        assert!(err.to_string().contains("re-save"));
    }

    #[test]
    fn not_a_zip_is_an_error() {
        assert!(matches!(read_pth(b"hello"), Err(PthError::NotZip(_))));
        assert!(read_pth(b"").is_err());
        assert!(read_pth(b"PK\x03\x04garbage").is_err());
    }

    #[test]
    fn truncated_files_are_errors_not_panics() {
        for case in [
            "module.pth",
            "views.pth",
            "module_deflate.pth",
            "module_proto4.pth",
        ] {
            let bytes = load(case);
            for cut in (0..bytes.len()).step_by(7) {
                assert!(read_pth(&bytes[..cut]).is_err(), "{case} cut at {cut}");
            }
        }
    }

    #[test]
    fn flipped_bytes_never_panic() {
        for case in [
            "module.pth",
            "views.pth",
            "dtypes.pth",
            "module_deflate.pth",
        ] {
            let bytes = load(case);
            let mut state = 0x2545_f491_u32;
            for i in 0..bytes.len() {
                let mut b = bytes.clone();
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                b[i] ^= 1 << (state >> 29);
                // Either an error or some tensors; must not panic.
                let _ = read_pth(&b);
            }
        }
    }

    #[test]
    fn corrupted_pickles_never_panic() {
        for case in ["module.pth", "module_proto4.pth", "views.pth"] {
            let bytes = load(case);
            let mut zip = zip::ZipArchive::new(Cursor::new(bytes.as_slice())).unwrap();
            let name = zip
                .file_names()
                .find(|n| n.ends_with("/data.pkl"))
                .unwrap()
                .to_owned();
            let pkl = read_entry(&mut zip, &name, MAX_PICKLE_BYTES).unwrap();
            assert!(unpickle(&pkl).is_ok());
            for cut in 0..pkl.len() - 1 {
                assert!(unpickle(&pkl[..cut]).is_err(), "{case} pickle cut at {cut}");
            }
            let mut state = 0x1234_5678_u32;
            for i in 0..pkl.len() {
                for _ in 0..4 {
                    let mut p = pkl.clone();
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    p[i] = (state >> 24) as u8;
                    if let Ok(v) = unpickle(&p) {
                        let _ = select_state_dict(&v);
                    }
                }
            }
        }
    }

    #[test]
    fn deeply_nested_pickle_is_refused() {
        let mut p = vec![0x80, 2, b'N'];
        p.extend(std::iter::repeat_n(0x85u8, 100_000)); // TUPLE1 around TUPLE1 ...
        p.push(b'.');
        let err = unpickle(&p).unwrap_err();
        assert!(err.to_string().contains("nested too deeply"), "{err}");
    }

    /// Builds a one-entry-plus-pickle archive to feed hand-written pickles.
    fn archive(pickle: &[u8], storages: &[(&str, &[u8])]) -> Vec<u8> {
        use std::io::Write;
        let mut buf = Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            let opt = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored);
            w.start_file("ckpt/data.pkl", opt).unwrap();
            w.write_all(pickle).unwrap();
            for (k, d) in storages {
                w.start_file(format!("ckpt/data/{k}"), opt).unwrap();
                w.write_all(d).unwrap();
            }
            w.finish().unwrap();
        }
        buf.into_inner()
    }

    /// Pickle of `{"w": _rebuild_tensor_v2(storage('0', numel), 0, size, stride)}`.
    fn tensor_pickle(numel: u32, size: &[u32], stride: &[u32]) -> Vec<u8> {
        let mut p = vec![0x80, 2, b'}', b'X'];
        p.extend(1u32.to_le_bytes());
        p.push(b'w');
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        p.extend(b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuJ");
        p.extend(numel.to_le_bytes());
        p.extend(b"tQK\x00(");
        for s in size {
            p.push(b'J');
            p.extend(s.to_le_bytes());
        }
        p.extend(b"t(");
        for s in stride {
            p.push(b'J');
            p.extend(s.to_le_bytes());
        }
        p.extend(b"t\x89ccollections\nOrderedDict\n)RtRs.");
        p
    }

    #[test]
    fn hand_written_pickle_reads() {
        let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let z = archive(&tensor_pickle(4, &[2, 2], &[1, 2]), &[("0", &data)]);
        let t = read_pth(&z).unwrap();
        assert_eq!(t[0].shape, vec![2, 2]);
        assert_eq!(t[0].to_f32().unwrap(), vec![1.0, 3.0, 2.0, 4.0]);
    }

    #[test]
    fn shape_beyond_storage_is_refused() {
        let data = [0u8; 16];
        let z = archive(&tensor_pickle(4, &[3, 2], &[2, 1]), &[("0", &data)]);
        assert!(matches!(read_pth(&z), Err(PthError::Tensor { .. })));
    }

    #[test]
    fn absurd_sizes_are_refused_before_allocating() {
        let data = [0u8; 16];
        let big = i32::MAX as u32;
        let z = archive(
            &tensor_pickle(big, &[big, big, big], &[0, 0, 0]),
            &[("0", &data)],
        );
        assert!(matches!(read_pth(&z), Err(PthError::Tensor { .. })));
        // Storage declared larger than its entry.
        let z = archive(&tensor_pickle(1000, &[4], &[1]), &[("0", &data)]);
        assert!(matches!(read_pth(&z), Err(PthError::Tensor { .. })));
    }

    #[test]
    fn missing_storage_entry_names_tensor_and_entry() {
        let z = archive(&tensor_pickle(4, &[4], &[1]), &[]);
        let err = read_pth(&z).unwrap_err();
        assert!(matches!(err, PthError::MissingStorage { .. }), "{err}");
        assert!(err.to_string().contains("ckpt/data/0"), "{err}");
    }

    #[test]
    fn unknown_opcode_and_missing_pickle_are_errors() {
        let z = archive(b"\x80\x02\xff.", &[]);
        assert!(matches!(
            read_pth(&z),
            Err(PthError::UnknownOpcode { opcode: 0xff, .. })
        ));
        let mut buf = Cursor::new(Vec::new());
        {
            let mut w = zip::ZipWriter::new(&mut buf);
            w.start_file("x/other", zip::write::SimpleFileOptions::default())
                .unwrap();
            w.finish().unwrap();
        }
        assert!(matches!(
            read_pth(&buf.into_inner()),
            Err(PthError::MissingPickle)
        ));
    }
}
