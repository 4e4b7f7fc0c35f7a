// @ts-check
// niivue (vendor/, 3 MB, BSD-2): the planes and the 3-D view draw with it.

let pending = null;
/** niivue's module, imported once, on first use; refused without WebGL2. */
export function loadNiivue() {
  if (!document.createElement('canvas').getContext('webgl2')) return Promise.reject(new Error('this browser has no WebGL2, which the viewer needs'));
  pending ??= import(new URL('vendor/niivue.js', location.href).href);
  return pending;
}
