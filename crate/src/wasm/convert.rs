//! Values across the JS boundary: errors, plain objects, typed arrays, timing.

use js_sys::{Float32Array, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

/// Any displayable error as a JS `Error` with `context: message`.
pub fn err(context: &str, e: impl std::fmt::Display) -> JsError {
    JsError::new(&format!("{context}: {e}"))
}

/// A serde value as a plain JS object (maps become objects, not `Map`s).
pub fn to_js<T: serde::Serialize + ?Sized>(v: &T) -> Result<JsValue, JsError> {
    let s = serde_wasm_bindgen::Serializer::json_compatible();
    v.serialize(&s)
        .map_err(|e| err("converting a result for JavaScript", e))
}

/// A JS object from named fields.
pub fn object(fields: &[(&str, JsValue)]) -> Result<JsValue, JsError> {
    let o = Object::new();
    for (k, v) in fields {
        Reflect::set(&o, &JsValue::from_str(k), v)
            .map_err(|_| JsError::new("building a result object failed"))?;
    }
    Ok(o.into())
}

pub fn bytes(v: &[u8]) -> JsValue {
    Uint8Array::from(v).into()
}

pub fn floats(v: &[f32]) -> JsValue {
    Float32Array::from(v).into()
}

/// `performance.now()` in a window or a worker (milliseconds, sub-ms resolution).
pub fn now_ms() -> f64 {
    let global = js_sys::global();
    Reflect::get(&global, &JsValue::from_str("performance"))
        .ok()
        .and_then(|p| {
            let now = Reflect::get(&p, &JsValue::from_str("now")).ok()?;
            now.dyn_into::<js_sys::Function>()
                .ok()?
                .call0(&p)
                .ok()?
                .as_f64()
        })
        .unwrap_or_else(js_sys::Date::now)
}
