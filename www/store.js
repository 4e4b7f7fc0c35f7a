// @ts-check
// The page's work kept in the browser (IndexedDB, on this machine only): the image file
// once per image, and the labels, prompts and undo history after every edit, so a closed
// tab or a crash loses nothing. One session is kept: the newest.

const DB = 'brainsam';
const STORE = 'session';

/** @returns {Promise<IDBDatabase>} */
function open() {
  return new Promise((resolve, reject) => {
    const r = indexedDB.open(DB, 1);
    r.onupgradeneeded = () => r.result.createObjectStore(STORE);
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

/** Runs one request on the store and resolves with its result once the transaction is done. */
async function run(mode, f) {
  const db = await open();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const req = f(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(req?.result);
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error ?? new Error('the browser refused to store the session'));
    });
  } finally {
    db.close();
  }
}

/** The image file the work is on: `{key, name, bytes, savedAt}` (key: name and size). */
export const saveImage = (image) => run('readwrite', (s) => s.put(image, 'image'));
/** The work: `{image (the image's key), labels, history, prompt, current, custom, savedAt}`. */
export const saveWork = (work) => run('readwrite', (s) => s.put(work, 'work'));

/** The stored session, or null when there is none (or no IndexedDB). */
export async function loadSession() {
  if (!globalThis.indexedDB) return null;
  const [image, work] = await Promise.all([run('readonly', (s) => s.get('image')), run('readonly', (s) => s.get('work'))]);
  return image && work && work.image === image.key ? { image, work } : null;
}

export const clearSession = () => run('readwrite', (s) => s.clear());
