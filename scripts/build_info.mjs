// Writes DIR/build.json: what the page should open at start (sample image, bundled model
// and whether its manifest says it is trained). Fails if the model's sha256 disagrees
// with its manifest.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';

const dir = process.argv[2];
const info = { sample: null, model: null };
if (existsSync(join(dir, 'sample/mni152_t1.nii.gz'))) {
  info.sample = { url: 'sample/mni152_t1.nii.gz', name: 'MNI152 2009a T1 template (nilearn)' };
}
const model = join(dir, 'weights/brainsam-default.safetensors');
if (existsSync(model)) {
  const mpath = join(dir, 'weights/manifest.json');
  const manifest = existsSync(mpath) ? JSON.parse(readFileSync(mpath, 'utf8')) : null;
  const sha = createHash('sha256').update(readFileSync(model)).digest('hex');
  const want = manifest?.sha256 ?? manifest?.model?.sha256;
  if (want && want !== sha) {
    console.error(`weights/brainsam-default.safetensors has sha256 ${sha}, its manifest says ${want}`);
    process.exit(1);
  }
  // Only a manifest that records training makes the model count as trained.
  const trained = manifest?.trained === true || Boolean(manifest?.training);
  // A trained model whose manifest says it is below the demo's quality bar: the page warns.
  // The e2e tests still hold it to their (modest) trained-model thresholds.
  const weak = manifest?.demo_quality === false;
  info.model = { url: 'weights/brainsam-default.safetensors', name: 'brainsam default model', trained, weak, sha256: sha, manifest };
}
// Every file of the build, for the service worker to cache for offline use (sw.js).
const walk = (d) => readdirSync(d, { withFileTypes: true })
  .flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : [relative(dir, join(d, e.name))]));
info.files = walk(dir).filter((f) => f !== 'build.json' && f !== 'sw.js').sort();
writeFileSync(join(dir, 'build.json'), JSON.stringify(info, null, 2));
