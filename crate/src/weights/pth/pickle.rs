//! The pickle machine: evaluates just what `torch.save` emits (protocol 2 opcodes, memo,
//! persistent ids for storages, the few torch globals that rebuild tensors and
//! parameters), with bounds on sizes and nesting so that a hostile file fails instead of
//! exhausting memory or the stack.

use std::collections::HashMap;
use std::rc::Rc;

use super::value::{Nested, StorageRef, TensorRef, Value, MAX_NESTING};
use super::{PthDType, PthError};

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

/// Evaluates a pickle to the value it builds.
pub(super) fn unpickle(code: &[u8]) -> Result<Value, PthError> {
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
