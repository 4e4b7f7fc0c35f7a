#!/usr/bin/env bash
# The demo's sample MRI: the ICBM 2009a MNI152 T1 template (197x233x189, 1 mm) that the
# nilearn wheel on PyPI ships, downloaded with pip and extracted. Cached in
# target/web-cache/mni152_t1.nii.gz, where the tests also find it; checked by sha256.
# Usage: scripts/fetch_sample.sh [OUT.nii.gz]   (without OUT: only fill the cache)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-}"
NILEARN=0.14.1
MEMBER=nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz
SHA=421a10e872fd6cadae7f61d358dffbcc1795a497d61ee76c5dda2503e1a1e9e6
CACHE=target/web-cache
PY="${BRAINSAM_VENV:-.venv}/bin/python"
[ -x "$PY" ] || PY=python3

have() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$SHA" ]; }
if ! have "$CACHE/mni152_t1.nii.gz"; then
  mkdir -p "$CACHE"
  "$PY" -m pip download -q "nilearn==$NILEARN" --no-deps --only-binary=:all: -d "$CACHE"
  "$PY" - "$CACHE/nilearn-$NILEARN-py3-none-any.whl" "$MEMBER" "$CACHE/mni152_t1.nii.gz" <<'PY'
import sys, zipfile
whl, member, out = sys.argv[1:]
with zipfile.ZipFile(whl) as z, open(out, "wb") as f:
    f.write(z.read(member))
PY
  have "$CACHE/mni152_t1.nii.gz" || { echo "sample MRI checksum mismatch" >&2; exit 1; }
fi
if [ -n "$OUT" ]; then
  mkdir -p "$(dirname "$OUT")"
  cp "$CACHE/mni152_t1.nii.gz" "$OUT"
fi
