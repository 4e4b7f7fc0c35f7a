// @ts-check
// The three planes of a canonical (RAS+) volume, drawn by niivue (WebGL2) in one canvas
// behind the view cells: the grey image, the labels as its drawing layer in the structures'
// colours, the crosshair and orientation letters. Input, prompts and the brush outline are
// ours, on a transparent canvas per cell, mapped to voxels through niivue's own tile
// geometry, so a click lands on the voxel drawn under the mouse. niivue is given the grid
// with a diagonal affine, so its voxel order is ours and it shares the label array.
// Slices follow the crate's convention (data::slicing): along `axis`, u is the lower
// remaining axis (columns), v the higher (rows); on screen u runs right and v up
// (neurological: R right, A/S up).

import { loadNiivue } from './niivue.js';

export const PLANE_AXES = [[1, 2], [0, 2], [0, 1]];
// Hand-correction tools: drag to paint (brush, erase), click to fill.
const PAINT_TOOLS = ['brush', 'erase'];
// niivue's slice type per slice axis (its AXIAL 0, CORONAL 1, SAGITTAL 2).
const SLICE_TYPE = [2, 1, 0];
const MAX_ZOOM = 16;

export class Viewer {
  /** @param {HTMLCanvasElement} canvas niivue's @param {HTMLElement[]} viewEls */
  constructor(canvas, viewEls, handlers) {
    this.h = handlers; // onPoint, onBox, onCursor, onSlice, onPaintStart, onPaint, onPaintEnd, onFill
    this.canvas = canvas;
    this.views = viewEls.map((el) => ({
      el,
      axis: Number(el.dataset.axis),
      canvas: /** @type {HTMLCanvasElement} */ (el.querySelector('canvas')),
      label: el.querySelector('.slice'),
    }));
    this.nv = null;
    this.vol = null;
    this.tool = 'pos';
    this.opacity = 0.5;
    this.window = 255;
    this.level = 128;
    this.shown = { window: -1, level: -1 }; // what niivue's grey layer was last given
    this._colors = new Map();
    this.prompt = null; // {axis, index, points: [[u, v, label]], box}
    this.drag = null;
    this.brush = 2; // brush and eraser radius, slice pixels
    this.hover = null; // {view, p}: where the brush outline is drawn
    this.labelsChanged = false;
    this.active = this.views[0];
    for (const v of this.views) this.#bind(v);
    new ResizeObserver(() => this.#resized()).observe(canvas.parentElement);
    addEventListener('keydown', (e) => this.#key(e));
  }

  set colors(m) { this._colors = m; this.#applyColors(); }
  get colors() { return this._colors; }

  /** gray and labels: Uint8Array over dims, x fastest; `labels` is drawn as it changes. */
  async setVolume(dims, spacing, gray, labels) {
    if (!this.nv) {
      const lib = await loadNiivue();
      this.nv = new lib.Niivue({
        backColor: [0, 0, 0, 1], crosshairColor: [0.31, 0.61, 0.97, 0.6], crosshairWidth: 1,
        isNearestInterpolation: true, interactive: false, dragAndDropEnabled: false,
        isColorbar: false, show3Dcrosshair: false, logLevel: 'error', loadingText: '',
      });
      this.lib = lib;
      await this.nv.attachToCanvas(this.canvas);
    }
    const nv = this.nv;
    this.vol = null;
    for (const v of [...nv.volumes]) nv.removeVolume(v);
    const [sx, sy, sz] = spacing;
    const affine = [sx, 0, 0, 0, 0, sy, 0, 0, 0, 0, sz, 0, 0, 0, 0, 1];
    const nifti = this.lib.NVImage.createNiftiArray(dims, spacing, affine, 2, gray);
    await nv.loadFromArrayBuffer(nifti.buffer, 'image.nii');
    nv.createEmptyDrawing();
    nv.drawBitmap = labels; // shared: edits only need a re-upload
    this.vol = { dims, spacing, gray, labels };
    this.shown = { window: -1, level: -1 };
    this.labelsChanged = true;
    this.#applyColors();
    nv.resizeListener();
    this.#layout();
    this.cursor = dims.map((d) => Math.floor(d / 2));
    this.resetZoom();
  }

  resetZoom() {
    if (this.nv) this.nv.scene.pan2Dxyzmm = [0, 0, 0, 1];
    this.draw();
  }

  setCursor(c) {
    const d = this.vol.dims;
    this.cursor = c.map((x, i) => Math.max(0, Math.min(d[i] - 1, Math.round(x))));
    this.draw();
    this.h.onCursor?.(this.cursor);
  }

  draw() {
    if (!this.vol) return;
    const nv = this.nv;
    if (this.window !== this.shown.window || this.level !== this.shown.level) {
      const back = nv.volumes[0];
      back.cal_min = this.level - this.window / 2;
      back.cal_max = this.level + this.window / 2;
      nv.updateGLVolume();
      this.shown = { window: this.window, level: this.level };
    }
    if (this.labelsChanged) { nv.refreshDrawing(false); this.labelsChanged = false; }
    nv.drawOpacity = this.opacity;
    nv.scene.crosshairPos = nv.vox2frac(this.cursor);
    nv.drawScene();
    for (const v of this.views) this.#drawView(v);
  }

  /** The labels changed outside the viewer: upload them with the next draw. */
  labelsEdited() { this.labelsChanged = true; }

  /** Page coordinates of the centre of slice pixel (u, v) in the view of `axis`. */
  pixelToClient(axis, u, v) {
    const g = this.#geometry(axis);
    const r = this.canvas.getBoundingClientRect();
    return { x: r.left + g.x0 + u * g.su, y: r.top + g.y0 + v * g.sv };
  }

  // How slice pixels map to CSS pixels of niivue's canvas in the tile of `axis`
  // (x = x0 + u·su, y = y0 + v·sv): the tile's extent in mm, as niivue draws it, and our
  // affine (voxel centre at index × spacing).
  #geometry(axis) {
    const nv = this.nv, dpr = nv.uiData.dpr || 1;
    const t = nv.screenSlices.find((s) => s.axCorSag === SLICE_TYPE[axis]);
    if (!t) throw new Error(`no ${['sagittal', 'coronal', 'axial'][axis]} tile on screen`);
    const [L, T, W, H] = t.leftTopWidthHeight;
    const [ua, va] = PLANE_AXES[axis];
    const kx = W / t.fovMM[0], ky = H / t.fovMM[1];
    const sp = this.vol.spacing;
    return {
      ua, va,
      x0: (L - t.leftTopMM[0] * kx) / dpr, su: (sp[ua] * kx) / dpr,
      y0: (T + H + t.leftTopMM[1] * ky) / dpr, sv: -(sp[va] * ky) / dpr,
    };
  }

  // niivue's tiles placed exactly over the view cells (fractions of its canvas).
  #layout() {
    if (!this.nv) return;
    const c = this.canvas.getBoundingClientRect();
    if (!c.width || !c.height) return;
    this.nv.setCustomLayout(this.views.map((v) => {
      const r = v.el.getBoundingClientRect();
      return {
        sliceType: SLICE_TYPE[v.axis],
        position: [(r.left - c.left) / c.width, (r.top - c.top) / c.height, r.width / c.width, r.height / c.height],
      };
    }));
  }

  #resized() {
    if (!this.nv) return;
    this.nv.resizeListener();
    this.#layout();
    this.draw();
  }

  #applyColors() {
    if (!this.nv || !this.vol) return;
    const cm = { R: [0], G: [0], B: [0], A: [0], I: [0], labels: [''] };
    for (const [id, rgb] of [...this._colors].sort((a, b) => a[0] - b[0])) {
      cm.R.push(rgb[0]); cm.G.push(rgb[1]); cm.B.push(rgb[2]); cm.A.push(255); cm.I.push(id); cm.labels.push(String(id));
    }
    this.nv.setDrawColormap(cm);
  }

  // The overlay of one cell: prompt points, box, brush outline; and its slice number.
  #drawView(view) {
    const { canvas } = view;
    const dpr = devicePixelRatio || 1;
    const W = canvas.clientWidth, H = canvas.clientHeight;
    if (canvas.width !== Math.round(W * dpr) || canvas.height !== Math.round(H * dpr)) {
      canvas.width = Math.round(W * dpr);
      canvas.height = Math.round(H * dpr);
    }
    const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext('2d'));
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    const g = this.#geometry(view.axis);
    const c = this.canvas.getBoundingClientRect(), r = canvas.getBoundingClientRect();
    // Cell coordinates of slice pixel (u, v)'s centre.
    const at = (u, v) => [c.left - r.left + g.x0 + u * g.su, c.top - r.top + g.y0 + v * g.sv];
    const index = this.cursor[view.axis];
    this.#drawPrompt(ctx, view, at, index);
    this.#drawBrush(ctx, view, at, g);
    view.label.textContent = `${index + 1} / ${this.vol.dims[view.axis]}`;
    this.h.onSlice?.(view.axis, index);
  }

  #drawPrompt(ctx, view, at, index) {
    const p = this.prompt;
    const box = this.drag?.box && this.drag.view === view ? this.drag.box : (p && p.axis === view.axis && p.index === index ? p.box : null);
    if (box) {
      const [x0, y0] = at(box[0] - 0.5, box[1] - 0.5), [x1, y1] = at(box[2] + 0.5, box[3] + 0.5);
      ctx.strokeStyle = '#4f9cf7';
      ctx.lineWidth = 2;
      ctx.strokeRect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
    }
    if (!p || p.axis !== view.axis || p.index !== index) return;
    for (const [u, v, l] of p.points) {
      const [x, y] = at(u, v);
      ctx.fillStyle = l ? '#2ecc71' : '#e5534b';
      ctx.strokeStyle = '#000';
      ctx.beginPath(); ctx.arc(x, y, 5, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
      ctx.fillStyle = '#fff';
      ctx.fillRect(x - 3, y - 0.75, 6, 1.5);
      if (l) ctx.fillRect(x - 0.75, y - 3, 1.5, 6);
    }
  }

  // The brush's footprint under the mouse, so its size is seen before painting.
  #drawBrush(ctx, view, at, g) {
    if (!PAINT_TOOLS.includes(this.tool) || this.hover?.view !== view) return;
    const [x, y] = at(...this.hover.p);
    const r = this.brush + 0.5;
    ctx.strokeStyle = this.tool === 'erase' ? '#e5534b' : '#fff';
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.ellipse(x, y, r * Math.abs(g.su), r * Math.abs(g.sv), 0, 0, 2 * Math.PI);
    ctx.stroke();
  }

  // Client point → slice pixel (u, v) of `view`'s plane, or null outside the image: the
  // voxel niivue draws there.
  #toPixel(view, e) {
    if (!this.vol) return null;
    const nv = this.nv, dpr = nv.uiData.dpr || 1;
    const r = this.canvas.getBoundingClientRect();
    const x = (e.clientX - r.left) * dpr, y = (e.clientY - r.top) * dpr;
    const tile = nv.screenSlices.findIndex((s) => s.axCorSag === SLICE_TYPE[view.axis]);
    if (tile < 0) return null;
    const frac = nv.screenXY2TextureFrac(x, y, tile);
    if (frac[0] < 0) return null;
    const vox = nv.frac2vox(frac);
    const [ua, va] = PLANE_AXES[view.axis];
    const { dims } = this.vol;
    if (vox[ua] < 0 || vox[va] < 0 || vox[ua] >= dims[ua] || vox[va] >= dims[va]) return null;
    return [vox[ua], vox[va]];
  }

  // Pan by a mouse move in `view`: the point under the mouse follows it.
  #pan(view, dx, dy) {
    const g = this.#geometry(view.axis);
    const pan = this.nv.scene.pan2Dxyzmm;
    const s = this.vol.spacing;
    pan[g.ua] += (dx / g.su) * s[g.ua];
    pan[g.va] += (dy / g.sv) * s[g.va];
    this.draw();
  }

  // Zoom about the crosshair, as niivue does.
  #zoom(f) {
    const pan = this.nv.scene.pan2Dxyzmm;
    const z = Math.max(0.5, Math.min(MAX_ZOOM, pan[3] * f));
    const mm = this.cursor.map((c, i) => c * this.vol.spacing[i]);
    for (let i = 0; i < 3; i++) pan[i] += (pan[3] - z) * mm[i];
    pan[3] = z;
    this.draw();
  }

  #bind(view) {
    const c = view.canvas;
    c.addEventListener('contextmenu', (e) => e.preventDefault());
    c.addEventListener('mouseenter', () => { this.active = view; });
    c.addEventListener('mousedown', (e) => {
      if (!this.vol) return;
      this.active = view;
      const p = this.#toPixel(view, e);
      this.drag = { view, x: e.clientX, y: e.clientY, start: p, moved: false, button: e.button, shift: e.shiftKey || e.altKey };
      if (PAINT_TOOLS.includes(this.tool) && e.button === 0 && p) {
        this.drag.paint = p;
        this.h.onPaintStart?.(view.axis, this.cursor[view.axis], p);
        this.labelsChanged = true;
        this.draw();
      }
    });
    c.addEventListener('mouseleave', () => { if (this.hover?.view === view) { this.hover = null; if (this.vol) this.#drawView(view); } });
    addEventListener('mousemove', (e) => {
      if (!this.vol) return;
      if (PAINT_TOOLS.includes(this.tool) && e.target === c) {
        const p = this.#toPixel(view, e);
        this.hover = p ? { view, p } : null;
        if (!this.drag) this.#drawView(view);
      }
      const d = this.drag;
      if (!d || d.view !== view) return;
      if (d.paint) {
        const p = this.#toPixel(view, e);
        if (p && (p[0] !== d.paint[0] || p[1] !== d.paint[1])) {
          this.h.onPaint?.(view.axis, this.cursor[view.axis], d.paint, p);
          d.paint = p;
          this.labelsChanged = true;
          this.draw();
        }
        return;
      }
      if (Math.hypot(e.clientX - d.x, e.clientY - d.y) > 3) d.moved = true;
      if (!d.moved) return;
      if (this.tool === 'box' && d.start && d.button === 0) {
        const p = this.#toPixel(view, e) || d.start;
        d.box = [Math.min(d.start[0], p[0]), Math.min(d.start[1], p[1]), Math.max(d.start[0], p[0]), Math.max(d.start[1], p[1])];
        this.#drawView(view);
      } else if (this.tool === 'nav' || d.button === 1) {
        this.#pan(view, e.clientX - d.x, e.clientY - d.y);
        d.x = e.clientX; d.y = e.clientY;
      }
    });
    addEventListener('mouseup', () => {
      const d = this.drag;
      if (!d || d.view !== view) return;
      this.drag = null;
      const index = this.cursor[view.axis];
      if (d.paint) {
        this.h.onPaintEnd?.(view.axis, index);
        this.draw();
        return;
      }
      if (PAINT_TOOLS.includes(this.tool)) { this.draw(); return; }
      if (d.box) {
        this.h.onBox?.(view.axis, index, d.box);
      } else if (!d.moved && d.start) {
        const [u, v] = d.start;
        const [ua, va] = PLANE_AXES[view.axis];
        const cur = [...this.cursor];
        cur[ua] = u; cur[va] = v;
        if (this.tool === 'nav' || this.tool === 'box') { this.setCursor(cur); return; }
        if (this.tool === 'fill') { if (d.button === 0) this.h.onFill?.(view.axis, index, u, v); return; }
        const negative = this.tool === 'neg' || d.button === 2 || d.shift;
        if (d.button === 1) return;
        this.cursor = cur;
        this.h.onCursor?.(this.cursor);
        this.h.onPoint?.(view.axis, index, u, v, !negative);
      }
      this.draw();
    });
    c.addEventListener('wheel', (e) => {
      if (!this.vol) return;
      e.preventDefault();
      if (e.ctrlKey || e.metaKey) this.#zoom(e.deltaY < 0 ? 1.15 : 1 / 1.15);
      else this.step(view.axis, e.deltaY < 0 ? 1 : -1);
    }, { passive: false });
  }

  step(axis, delta) {
    const c = [...this.cursor];
    c[axis] += delta;
    this.setCursor(c);
  }

  #key(e) {
    if (!this.vol || e.target.closest?.('input, select')) return;
    if (e.key === 'ArrowUp' || e.key === 'PageUp') { this.step(this.active.axis, 1); e.preventDefault(); }
    if (e.key === 'ArrowDown' || e.key === 'PageDown') { this.step(this.active.axis, -1); e.preventDefault(); }
  }
}
