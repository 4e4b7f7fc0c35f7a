// @ts-check
// Promise-based calls into the engine worker; progress and status arrive as events. The
// messages are typed in protocol.js.

/** @typedef {import('./protocol.js').Requests} Requests */
/** @typedef {import('./protocol.js').Replies} Replies */
/** @typedef {import('./protocol.js').Events} Events */
/** @typedef {import('./protocol.js').Reply} Reply */
/** @typedef {import('./protocol.js').EventMessage} EventMessage */

export class EngineClient extends EventTarget {
  constructor() {
    super();
    this.worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
    this.next = 1;
    /** @type {Map<number, {resolve: (result: Replies[keyof Replies]) => void, reject: (e: Error) => void}>} */
    this.pending = new Map();
    this.worker.onmessage = (e) => this.#receive(e.data);
    this.worker.onerror = (e) => this.#fail(e.message || 'the engine worker failed to start');
  }

  /**
   * Runs `op` in the worker; resolves to its reply, rejects with its error.
   * @template {keyof Requests} K
   * @param {K} op
   * @param {Requests[K]} [args]
   * @param {Transferable[]} [transfer] buffers of `args` handed to the worker
   * @returns {Promise<Replies[K]>}
   */
  call(op, args, transfer = []) {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, op, args: args ?? {} }, transfer);
    });
  }

  /**
   * Calls `f` with the detail of each `type` event.
   * @template {keyof Events} E
   * @param {E} type
   * @param {(detail: Events[E]) => void} f
   */
  on(type, f) {
    this.addEventListener(type, (e) => f(/** @type {CustomEvent<Events[E]>} */ (e).detail));
  }

  /**
   * Hint for encoding ahead: the slice the user looks at.
   * @param {number} axis
   * @param {number} index
   * @param {number} size slices along `axis`
   */
  focus(axis, index, size) {
    /** @type {import('./protocol.js').FocusHint} */
    const hint = { op: 'focus', args: { axis, index, size } };
    this.worker.postMessage(hint);
  }

  /** @param {Reply | EventMessage} m */
  #receive(m) {
    if ('event' in m) {
      this.dispatchEvent(new CustomEvent(m.event, { detail: m.detail }));
      return;
    }
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    if (m.ok === true) p.resolve(m.result);
    else p.reject(new Error(m.error));
  }

  /** @param {string} message */
  #fail(message) {
    for (const p of this.pending.values()) p.reject(new Error(message));
    this.pending.clear();
    this.dispatchEvent(new CustomEvent('crash', { detail: { message } }));
  }
}
