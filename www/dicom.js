// @ts-check
// DICOM series → NIfTI inside the page with dcm2niix (its WebAssembly build, @niivue/dcm2niix,
// JPEG and JPEG 2000 codecs included), in a worker of its own: nothing is uploaded. The NIfTI
// then opens like any other image, so labels export in dcm2niix's grid and affine.

const DCM2NIIX = 'vendor/dcm2niix/index.jpeg.js';
const IMAGE_EXT = /\.(nii|nii\.gz|mgz|mgh|nrrd)$/i;

/** True when a single file is a DICOM Part-10 file ("DICM" at byte 128) or named like one. */
export async function isDicom(file) {
  if (IMAGE_EXT.test(file.name)) return false;
  if (/\.(dcm|ima)$/i.test(file.name)) return true;
  const head = new Uint8Array(await file.slice(128, 132).arrayBuffer());
  return String.fromCharCode(...head) === 'DICM';
}

/**
 * Converts the files of one or more series; opens the largest (the anatomy, not a localiser).
 * @param {File[]} files
 * @returns {Promise<{bytes: ArrayBuffer, name: string, note: string}>}
 */
export async function dicomToNifti(files) {
  const { Dcm2niix } = await import(new URL(DCM2NIIX, location.href).href);
  const conv = new Dcm2niix();
  await conv.init();
  let out;
  try {
    // -b n: no BIDS sidecar; -z n: uncompressed (the page reads it at once).
    out = await conv.input(files).bids('n').z('n').run();
  } catch (e) {
    // dcm2niix's exit code 2: no DICOM image among the files.
    if (/exit code 2\b/.test(String(e.message))) throw new Error(`No DICOM image series found in the ${files.length} file(s).`);
    throw new Error(`dcm2niix could not convert the ${files.length} DICOM file(s): ${e.message || e}`);
  } finally {
    conv.worker?.terminate();
  }
  const niftis = (out || []).filter((f) => /\.nii$/i.test(f.name)).sort((a, b) => b.size - a.size);
  if (!niftis.length) throw new Error(`No DICOM image series found in the ${files.length} file(s).`);
  const pick = niftis[0];
  const note = niftis.length > 1
    ? `${niftis.length} series found; opened the largest (${niftis.slice(1).map((f) => f.name).join(', ')} not opened)`
    : '';
  return { bytes: await pick.arrayBuffer(), name: pick.name, note };
}

/**
 * The files of a drop, folders walked (webkitGetAsEntry), with their relative paths.
 * @param {DataTransfer} dt
 * @returns {Promise<File[]>}
 */
export async function droppedFiles(dt) {
  const entries = Array.from(dt.items || []).map((i) => i.webkitGetAsEntry?.()).filter(Boolean);
  if (!entries.length) return Array.from(dt.files);
  const files = [];
  const walk = async (entry, path) => {
    if (entry.isFile) {
      const f = await new Promise((res, rej) => entry.file(res, rej));
      Object.defineProperty(f, '_webkitRelativePath', { value: path + f.name });
      files.push(f);
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
        if (!batch.length) break;
        for (const e of batch) await walk(e, `${path}${entry.name}/`);
      }
    }
  };
  for (const e of entries) await walk(e, '');
  return files;
}
