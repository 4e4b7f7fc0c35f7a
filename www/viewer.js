// @ts-check
// Three-plane canvas viewer of a canonical (RAS+) volume: grey image, label overlay,
// crosshair, prompts. Slices follow the crate's convention (data::slicing): along `axis`,
// u is the lower remaining axis (columns), v the higher (rows). On screen u runs right and
// v runs up, so every plane is shown in neurological orientation (R right, A/S up).

export const PLANE_AXES = [[1, 2], [0, 2], [0, 1]];
// Hand-correction tools: drag to paint (brush, erase), click to fill.
const PAINT_TOOLS = ['brush', 'erase'];
// Screen-edge letters (left, right, top) per slice axis.
const EDGES = [['P', 'A', 'S'], ['L', 'R', 'S'], ['L', 'R', 'A']];

export class Viewer {
  constructor(viewEls, handlers) {
    this.h = handlers; // onPoint, onBox, onCursor, onSlice, onPaintStart, onPaint, onPaintEnd, onFill
    this.views = viewEls.map((el) => ({
      el,
      axis: Number(el.dataset.axis),
      canvas: el.querySelector('canvas'),
      label: el.querySelector('.slice'),
      zoom: 1, panX: 0, panY: 0, geom: null,
    }));
    this.vol = null;
    this.tool = 'pos';
    this.opacity = 0.5;
    this.window = 255;
    this.level = 128;
    this.colors = new Map();
    this.prompt = null; // {axis, index, points: [[u, v, label]], box}
    this.drag = null;
    this.brush = 2; // brush and eraser radius, slice pixels
    this.hover = null; // {view, p}: where the brush outline is drawn
    this.active = this.views[0];
    this.offscreen = document.createElement('canvas');
    for (const v of this.views) this.#bind(v);
    new ResizeObserver(() => this.draw()).observe(viewEls[0].parentElement);
    addEventListener('keydown', (e) => this.#key(e));
  }

  /** gray and labels: Uint8Array over dims, x fastest. */
  setVolume(dims, spacing, gray, labels) {
    this.vol = { dims, spacing, gray, labels };
    this.cursor = dims.map((d) => Math.floor(d / 2));
    this.resetZoom();
  }

  resetZoom() {
    for (const v of this.views) Object.assign(v, { zoom: 1, panX: 0, panY: 0 });
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
    for (const v of this.views) this.#drawView(v);
  }

  /** Page coordinates of the centre of slice pixel (u, v) in the view of `axis`. */
  pixelToClient(axis, u, vv) {
    const view = this.views.find((v) => v.axis === axis);
    const g = view.geom;
    const r = view.canvas.getBoundingClientRect();
    return { x: r.left + g.ox + (u + 0.5) * g.sx, y: r.top + g.oy + (g.rows - 1 - vv + 0.5) * g.sy };
  }

  #geometry(view) {
    const { dims, spacing } = this.vol;
    const [ua, va] = PLANE_AXES[view.axis];
    const cols = dims[ua], rows = dims[va];
    const W = view.canvas.clientWidth, H = view.canvas.clientHeight;
    const pw = cols * spacing[ua], ph = rows * spacing[va];
    const fit = Math.min(W / pw, H / ph) * view.zoom;
    const dw = pw * fit, dh = ph * fit;
    return {
      ua, va, cols, rows, W, H,
      ox: (W - dw) / 2 + view.panX, oy: (H - dh) / 2 + view.panY,
      sx: dw / cols, sy: dh / rows,
    };
  }

  #drawView(view) {
    const g = (view.geom = this.#geometry(view));
    const { canvas } = view;
    const dpr = devicePixelRatio || 1;
    if (canvas.width !== Math.round(g.W * dpr) || canvas.height !== Math.round(g.H * dpr)) {
      canvas.width = Math.round(g.W * dpr);
      canvas.height = Math.round(g.H * dpr);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, g.W, g.H);
    const index = this.cursor[view.axis];
    this.#renderSlice(view.axis, index, g);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(this.offscreen, g.ox, g.oy, g.cols * g.sx, g.rows * g.sy);
    this.#drawCrosshair(ctx, view, g);
    this.#drawPrompt(ctx, view, g, index);
    this.#drawBrush(ctx, view, g);
    this.#drawEdges(ctx, view, g);
    view.label.textContent = `${index + 1} / ${this.vol.dims[view.axis]}`;
    this.h.onSlice?.(view.axis, index);
  }

  // Grey (window/level) plus label colours blended at `opacity`, rows flipped so v runs up.
  #renderSlice(axis, index, g) {
    const { dims, gray, labels } = this.vol;
    const strides = [1, dims[0], dims[0] * dims[1]];
    const su = strides[g.ua], sv = strides[g.va];
    const base = index * strides[axis];
    const off = this.offscreen;
    if (off.width !== g.cols || off.height !== g.rows) { off.width = g.cols; off.height = g.rows; }
    const octx = off.getContext('2d');
    const img = octx.createImageData(g.cols, g.rows);
    const px = img.data;
    const lo = this.level - this.window / 2, scale = 255 / this.window, a = this.opacity;
    for (let v = 0; v < g.rows; v++) {
      const row = (g.rows - 1 - v) * g.cols;
      for (let u = 0; u < g.cols; u++) {
        const i = base + u * su + v * sv;
        let y = (gray[i] - lo) * scale;
        y = y < 0 ? 0 : y > 255 ? 255 : y;
        let r = y, gg = y, b = y;
        const id = labels[i];
        if (id) {
          const c = this.colors.get(id) || [255, 255, 255];
          r = y * (1 - a) + c[0] * a; gg = y * (1 - a) + c[1] * a; b = y * (1 - a) + c[2] * a;
        }
        const o = (row + u) * 4;
        px[o] = r; px[o + 1] = gg; px[o + 2] = b; px[o + 3] = 255;
      }
    }
    octx.putImageData(img, 0, 0);
  }

  #drawCrosshair(ctx, view, g) {
    const x = g.ox + (this.cursor[g.ua] + 0.5) * g.sx;
    const y = g.oy + (g.rows - 1 - this.cursor[g.va] + 0.5) * g.sy;
    ctx.strokeStyle = 'rgba(79,156,247,.45)';
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(x, g.oy); ctx.lineTo(x, g.oy + g.rows * g.sy);
    ctx.moveTo(g.ox, y); ctx.lineTo(g.ox + g.cols * g.sx, y);
    ctx.stroke();
  }

  #drawPrompt(ctx, view, g, index) {
    const p = this.prompt;
    const at = (u, v) => [g.ox + (u + 0.5) * g.sx, g.oy + (g.rows - 1 - v + 0.5) * g.sy];
    const box = this.drag?.box && this.drag.view === view ? this.drag.box : (p && p.axis === view.axis && p.index === index ? p.box : null);
    if (box) {
      const [x0, y1] = at(box[0] - 0.5, box[1] - 0.5), [x1, y0] = at(box[2] + 0.5, box[3] + 0.5);
      ctx.strokeStyle = '#4f9cf7';
      ctx.lineWidth = 2;
      ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
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
  #drawBrush(ctx, view, g) {
    if (!PAINT_TOOLS.includes(this.tool) || this.hover?.view !== view) return;
    const [u, v] = this.hover.p;
    const r = this.brush + 0.5;
    ctx.strokeStyle = this.tool === 'erase' ? '#e5534b' : '#fff';
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.ellipse(g.ox + (u + 0.5) * g.sx, g.oy + (g.rows - 1 - v + 0.5) * g.sy, r * g.sx, r * g.sy, 0, 0, 2 * Math.PI);
    ctx.stroke();
  }

  #drawEdges(ctx, view, g) {
    const [l, r, t] = EDGES[view.axis];
    ctx.fillStyle = '#9aa1ab';
    ctx.font = '12px system-ui';
    ctx.fillText(l, 6, g.H / 2);
    ctx.fillText(r, g.W - 14, g.H / 2);
    ctx.fillText(t, g.W / 2, 28);
  }

  // Client point → fractional slice pixel (u, v), or null outside the image.
  #toPixel(view, e) {
    const g = view.geom;
    if (!g) return null;
    const r = view.canvas.getBoundingClientRect();
    const ix = (e.clientX - r.left - g.ox) / g.sx, iy = (e.clientY - r.top - g.oy) / g.sy;
    if (ix < 0 || iy < 0 || ix >= g.cols || iy >= g.rows) return null;
    return [Math.floor(ix), g.rows - 1 - Math.floor(iy)];
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
        this.#drawView(view);
      }
    });
    c.addEventListener('mouseleave', () => { if (this.hover?.view === view) { this.hover = null; this.#drawView(view); } });
    addEventListener('mousemove', (e) => {
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
          this.#drawView(view);
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
        view.panX += e.clientX - d.x; view.panY += e.clientY - d.y;
        d.x = e.clientX; d.y = e.clientY;
        this.#drawView(view);
      }
    });
    addEventListener('mouseup', (e) => {
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
        const g = view.geom;
        const c = [...this.cursor];
        c[g.ua] = u; c[g.va] = v;
        if (this.tool === 'nav' || this.tool === 'box') { this.setCursor(c); return; }
        if (this.tool === 'fill') { if (d.button === 0) this.h.onFill?.(view.axis, index, u, v); return; }
        const negative = this.tool === 'neg' || d.button === 2 || d.shift;
        if (d.button === 1) return;
        this.cursor = c;
        this.h.onCursor?.(this.cursor);
        this.h.onPoint?.(view.axis, index, u, v, !negative);
      }
      this.draw();
    });
    c.addEventListener('wheel', (e) => {
      if (!this.vol) return;
      e.preventDefault();
      if (e.ctrlKey || e.metaKey) {
        const r = c.getBoundingClientRect();
        const mx = e.clientX - r.left - view.geom.W / 2 - view.panX, my = e.clientY - r.top - view.geom.H / 2 - view.panY;
        const f = e.deltaY < 0 ? 1.15 : 1 / 1.15;
        const z = Math.max(0.5, Math.min(16, view.zoom * f));
        const k = z / view.zoom;
        view.panX -= mx * (k - 1); view.panY -= my * (k - 1);
        view.zoom = z;
        this.#drawView(view);
      } else {
        this.step(view.axis, e.deltaY < 0 ? 1 : -1);
      }
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
