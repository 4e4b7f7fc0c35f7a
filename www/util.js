// @ts-check
// Label-volume helpers on Uint8Arrays laid out as the crate's volumes (x fastest), with
// slices as in data::slicing: along `axis`, rows run over the higher other axis (v),
// columns over the lower (u).

import { PLANE_AXES } from './viewer.js';

function planeLoop(dims, axis, index, f) {
  const strides = [1, dims[0], dims[0] * dims[1]];
  const [ua, va] = PLANE_AXES[axis];
  const cols = dims[ua], rows = dims[va];
  const base = index * strides[axis];
  for (let v = 0, k = 0; v < rows; v++) {
    for (let u = 0; u < cols; u++, k++) f(base + u * strides[ua] + v * strides[va], k);
  }
  return rows * cols;
}

export function readSlice(vol, dims, axis, index) {
  const [ua, va] = PLANE_AXES[axis];
  const out = new Uint8Array(dims[ua] * dims[va]);
  planeLoop(dims, axis, index, (i, k) => { out[k] = vol[i]; });
  return out;
}

/** With `id`, `plane` is a 0/1 mask for that label; with null, raw labels to copy. */
export function writeSlice(vol, dims, axis, index, plane, id) {
  planeLoop(dims, axis, index, (i, k) => {
    if (id === null) vol[i] = plane[k];
    else if (plane[k]) vol[i] = id;
    else if (vol[i] === id) vol[i] = 0;
  });
}

/** Label `id` becomes exactly the voxels set in `mask`. */
export function replaceLabel(vol, mask, id) {
  for (let i = 0; i < vol.length; i++) {
    if (mask[i]) vol[i] = id;
    else if (vol[i] === id) vol[i] = 0;
  }
}

export function countLabel(vol, id) {
  let n = 0;
  for (let i = 0; i < vol.length; i++) n += Number(vol[i] === id);
  return n;
}

/**
 * Dice of label `id` between two label arrays: 2 |A ∩ B| / (|A| + |B|), null when both are
 * empty. It mirrors the crate's one Dice (`data::metrics::dice`, the rule of `metrics` and
 * `evaluate`: two empty masks are undefined, not 1); the e2e suite compares the two on the
 * same volumes, the both-empty case included. In JS because it runs on every click on the
 * page's own label volume, which the worker does not hold.
 * @param {ArrayLike<number>} a
 * @param {ArrayLike<number>} b
 * @param {number} id
 * @returns {number | null}
 */
export function dice(a, b, id) {
  let na = 0, nb = 0, both = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] === id, y = b[i] === id;
    na += Number(x); nb += Number(y); both += Number(x && y);
  }
  return na + nb ? (2 * both) / (na + nb) : null;
}

/**
 * Volumes per structure, as SynthSeg's `--vol` CSV: one row per structure (zero where it
 * has no voxels), its label value in the exported file, voxel count and mm³.
 * @param {Uint8Array} labels
 * @param {{id: number, name: string, freesurfer?: number}[]} structures
 * @param {number[]} spacing voxel sides in mm
 * @param {string} convention 'freesurfer' (aseg values) or 'common' (ids 1–16)
 */
export function volumesCsv(labels, structures, spacing, convention) {
  const counts = new Float64Array(256);
  for (let i = 0; i < labels.length; i++) counts[labels[i]]++;
  const voxelMm3 = spacing[0] * spacing[1] * spacing[2];
  const rows = structures.map((s) => {
    const name = /[",\n]/.test(s.name) ? `"${s.name.replaceAll('"', '""')}"` : s.name;
    return `${name},${labelValue(s, convention)},${counts[s.id]},${(counts[s.id] * voxelMm3).toFixed(3)}`;
  });
  return `structure,label,voxels,volume_mm3\n${rows.join('\n')}\n`;
}

/**
 * A FreeSurfer colour table (the format of FreeSurferColorLUT.txt: value, name, R G B A
 * with A = 0 opaque) for the exported labels, so Freeview and 3D Slicer show the page's colours.
 * @param {{id: number, name: string, rgb: number[], freesurfer?: number}[]} structures
 * @param {string} convention 'freesurfer' (aseg values) or 'common' (ids 1–16)
 */
export function colourTable(structures, convention) {
  const lines = ['#No. Label Name:                            R   G   B   A', '0   Unknown                                  0   0   0   0'];
  for (const s of structures) {
    const name = s.name.replace(/\s+/g, '_');
    lines.push(`${String(labelValue(s, convention)).padEnd(4)}${name.padEnd(41)}${s.rgb.map((c) => String(c).padStart(3)).join(' ')}   0`);
  }
  return `${lines.join('\n')}\n`;
}

/** A structure's value in the exported file (the engine's `Convention::value`). */
const labelValue = (s, convention) => (convention === 'freesurfer' && s.freesurfer != null ? s.freesurfer : s.id);

export function downloadBytes(bytes, name, type = 'application/gzip') {
  const url = URL.createObjectURL(new Blob([bytes], { type }));
  const a = Object.assign(document.createElement('a'), { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export const fmtMs = (ms) => (ms == null ? '–' : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(0)} ms`);
export const fmtBytes = (n) => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(1)} MiB` : `${(n / 1024).toFixed(0)} KiB`);
