// @ts-check
// The 3-D view: the labels rendered by niivue (WebGL2 ray casting), each structure in its
// colour, rotated by dragging; only the box around the labelled voxels, so they fill it.

import { loadNiivue } from './niivue.js';

export class LabelRender {
  /** @param {HTMLCanvasElement} canvas @param {HTMLElement} status */
  constructor(canvas, status) {
    this.canvas = canvas;
    this.status = status;
    this.nv = null;
    this.lib = null; // the niivue module
    this.volume = null; // niivue's image of the labelled box
    this.box = null; // [[from, size] per axis] of that image in the canonical grid
    this.ready = null; // the last render, awaited by the next
    this.timer = 0;
    /** @type {number[]} */ this.dims = [];
    /** @type {number[]} */ this.spacing = [];
    /** @type {Uint8Array} */ this.labels = new Uint8Array();
    this.structures = [];
    this.shownAt = 0; // for the tests: when the render last took new labels
    this.failed = '';
  }

  /** A new image: its canonical grid, labels (Uint8Array, x fastest) and structures. */
  async show(dims, spacing, labels, structures) {
    Object.assign(this, { dims, spacing, labels, structures, box: null });
    this.ready = this.#load().then(() => this.#update()).catch((e) => this.#fail(e));
    await this.ready;
  }

  /** Labels or colours changed: re-render soon (changes come in bursts while painting). */
  schedule(structures = this.structures) {
    this.structures = structures;
    if (!this.failed) this.status.textContent = ''; // until the update says otherwise
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.ready = (this.ready ?? Promise.resolve()).then(() => this.#update()).catch((e) => this.#fail(e));
    }, 250);
  }

  #fail(e) {
    this.failed = `3-D view unavailable: ${e.message || e}`;
    this.status.textContent = this.failed;
  }

  async #load() {
    if (this.nv) return;
    this.lib = await loadNiivue();
    this.nv = new this.lib.Niivue({
      backColor: [0.05, 0.05, 0.07, 1], show3Dcrosshair: false, isOrientCube: true,
      dragAndDropEnabled: false, logLevel: 'error', loadingText: '',
    });
    await this.nv.attachToCanvas(this.canvas);
    this.nv.setSliceType(this.lib.SLICE_TYPE.RENDER);
  }

  /** The labelled voxels' bounding box grown to at least 60 mm a side, or null when none. */
  #labelBox() {
    const [nx, ny, nz] = this.dims;
    const lo = [nx, ny, nz], hi = [-1, -1, -1];
    const l = this.labels;
    for (let z = 0, i = 0; z < nz; z++) for (let y = 0; y < ny; y++) for (let x = 0; x < nx; x++, i++) {
      if (l[i] === 0) continue;
      if (x < lo[0]) lo[0] = x; if (x > hi[0]) hi[0] = x;
      if (y < lo[1]) lo[1] = y; if (y > hi[1]) hi[1] = y;
      if (z < lo[2]) lo[2] = z; if (z > hi[2]) hi[2] = z;
    }
    if (hi[0] < 0) return null;
    return [0, 1, 2].map((a) => {
      const n = this.dims[a];
      const want = Math.min(n, Math.max(hi[a] - lo[a] + 9, Math.ceil(60 / this.spacing[a])));
      const from = Math.max(0, Math.min(n - want, Math.round((lo[a] + hi[a] - want) / 2)));
      return [from, want];
    });
  }

  async #update() {
    if (!this.nv || this.failed) return;
    const box = this.#labelBox();
    this.status.textContent = box ? '' : 'the 3-D view shows the structures once they have masks';
    if (!box) {
      for (const v of [...this.nv.volumes]) this.nv.removeVolume(v);
      this.volume = null;
      this.box = null;
      this.shownAt = Date.now();
      return;
    }
    // Only the box is rendered, so the view is filled by the structures, not the head.
    const [[x0, w], [y0, h], [z0, d]] = box;
    const [nx, ny] = this.dims;
    const sub = new Uint8Array(w * h * d);
    for (let z = 0; z < d; z++) for (let y = 0; y < h; y++) {
      const at = x0 + nx * (y0 + y + ny * (z0 + z));
      sub.set(this.labels.subarray(at, at + w), w * (y + h * z));
    }
    if (!this.volume || JSON.stringify(box) !== JSON.stringify(this.box)) {
      // The canonical grid is RAS+: a diagonal affine, so niivue's voxel order is ours.
      const [sx, sy, sz] = this.spacing;
      const affine = [sx, 0, 0, x0 * sx, 0, sy, 0, y0 * sy, 0, 0, sz, z0 * sz, 0, 0, 0, 1];
      const bytes = this.lib.NVImage.createNiftiArray([w, h, d], this.spacing, affine, 2, sub);
      for (const v of [...this.nv.volumes]) this.nv.removeVolume(v);
      await this.nv.loadFromArrayBuffer(bytes.buffer, 'labels.nii');
      this.volume = this.nv.volumes[0];
      if (!this.box) this.nv.setRenderAzimuthElevation(120, 15);
      this.box = box;
    } else {
      this.volume.img.set(sub);
    }
    const cm = { R: [0], G: [0], B: [0], A: [0], I: [0], labels: [''] };
    for (const s of [...this.structures].sort((a, b) => a.id - b.id)) {
      cm.R.push(s.rgb[0]); cm.G.push(s.rgb[1]); cm.B.push(s.rgb[2]); cm.A.push(255); cm.I.push(s.id); cm.labels.push(s.name);
    }
    this.volume.cal_min = 0;
    this.volume.cal_max = Math.max(1, ...this.structures.map((s) => s.id));
    this.volume.setColormapLabel(cm);
    this.nv.updateGLVolume();
    this.shownAt = Date.now();
  }
}
