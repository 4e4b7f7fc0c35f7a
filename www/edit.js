// @ts-check
// Hand correction on a slice of the label volume: brush, eraser and fill. Pixels are the
// viewer's (u, v) of a slice along `axis` (data::slicing); every function changes `labels`
// in place and returns how many voxels changed, so the page can skip empty strokes.

import { PLANE_AXES } from './viewer.js';

/** Voxel index of slice pixel (u, v), or -1 outside the slice. */
function voxelOf(dims, axis, index, u, v) {
  const [ua, va] = PLANE_AXES[axis];
  if (u < 0 || v < 0 || u >= dims[ua] || v >= dims[va]) return -1;
  const strides = [1, dims[0], dims[0] * dims[1]];
  return index * strides[axis] + u * strides[ua] + v * strides[va];
}

/**
 * A disc of `radius` pixels (0: one pixel) around (u, v). Painting (`erase` false) sets
 * it to `id` over anything; erasing clears only `id`'s voxels, so the other structures
 * survive a careless stroke.
 * @param {Uint8Array} labels
 */
export function paintDisc(labels, dims, axis, index, u, v, radius, id, erase) {
  let changed = 0;
  const r = Math.max(0, Math.round(radius));
  for (let dv = -r; dv <= r; dv++) {
    for (let du = -r; du <= r; du++) {
      if (du * du + dv * dv > r * r + r) continue; // a round disc, not a diamond, at small r
      const i = voxelOf(dims, axis, index, u + du, v + dv);
      if (i < 0) continue;
      const next = erase ? (labels[i] === id ? 0 : labels[i]) : id;
      if (next !== labels[i]) { labels[i] = next; changed++; }
    }
  }
  return changed;
}

/** Discs every pixel along the segment (u0, v0) → (u1, v1): a fast drag leaves no gaps. */
export function paintLine(labels, dims, axis, index, [u0, v0], [u1, v1], radius, id, erase) {
  const n = Math.max(Math.abs(u1 - u0), Math.abs(v1 - v0), 1);
  let changed = 0;
  for (let k = 0; k <= n; k++) {
    const u = Math.round(u0 + ((u1 - u0) * k) / n), v = Math.round(v0 + ((v1 - v0) * k) / n);
    changed += paintDisc(labels, dims, axis, index, u, v, radius, id, erase);
  }
  return changed;
}

/**
 * Fills the region around (u, v) that `id`'s voxels enclose on the slice (4-connected, not
 * reaching the slice's edge) with `id`. Returns the voxels filled, 0 when (u, v) already is
 * `id`; throws when the region is open (it would flood the slice).
 * @param {Uint8Array} labels
 */
export function fillEnclosed(labels, dims, axis, index, u, v, id) {
  const [ua, va] = PLANE_AXES[axis];
  const cols = dims[ua], rows = dims[va];
  const start = voxelOf(dims, axis, index, u, v);
  if (start < 0 || labels[start] === id) return 0;
  const seen = new Uint8Array(rows * cols);
  const region = [];
  const stack = [v * cols + u];
  seen[v * cols + u] = 1;
  while (stack.length) {
    const k = /** @type {number} */ (stack.pop());
    const pu = k % cols, pv = (k - pu) / cols;
    if (pu === 0 || pv === 0 || pu === cols - 1 || pv === rows - 1) {
      throw new Error('That region is not closed by the structure on this slice: draw its outline all round, then fill.');
    }
    region.push(k);
    for (const n of [k - 1, k + 1, k - cols, k + cols]) {
      if (seen[n]) continue;
      seen[n] = 1;
      const nu = n % cols, nv = (n - nu) / cols;
      if (labels[voxelOf(dims, axis, index, nu, nv)] !== id) stack.push(n);
    }
  }
  for (const k of region) {
    const pu = k % cols;
    labels[voxelOf(dims, axis, index, pu, (k - pu) / cols)] = id;
  }
  return region.length;
}
