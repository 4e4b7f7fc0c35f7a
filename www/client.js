// Promise-based calls into the engine worker; progress and status arrive as events.

export class EngineClient extends EventTarget {
  constructor() {
    super();
    this.worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    this.next = 1;
    this.pending = new Map();
    this.worker.onmessage = (e) => this.#receive(e.data);
    this.worker.onerror = (e) => this.#fail(e.message || 'the engine worker failed to start');
  }

  call(op, args = {}, transfer = []) {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, op, args }, transfer);
    });
  }

  /** Hint for encoding ahead: the slice the user looks at. */
  focus(axis, index, size) {
    this.worker.postMessage({ op: 'focus', args: { axis, index, size } });
  }

  #receive(m) {
    if (m.event) {
      this.dispatchEvent(Object.assign(new Event(m.event), { detail: m.detail }));
      return;
    }
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    if (m.ok) p.resolve(m.result);
    else p.reject(new Error(m.error));
  }

  #fail(message) {
    for (const p of this.pending.values()) p.reject(new Error(message));
    this.pending.clear();
    this.dispatchEvent(Object.assign(new Event('crash'), { detail: { message } }));
  }
}
