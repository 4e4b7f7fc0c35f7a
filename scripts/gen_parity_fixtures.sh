#!/usr/bin/env bash
# Parity fixtures from Meta's segment_anything (random weights), three geometries.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${BRAINSAM_VENV:-.venv}/bin/python"
OUT=tests/fixtures/parity/generated
if [ -f "$OUT/.complete" ]; then exit 0; fi
rm -rf "$OUT"
"$PY" tests/parity/gen_fixtures.py --out "$OUT" --prefix g256_ --seed 1 \
  --embed-dim 64 --depth 4 --heads 4 --global 1 3 --image-size 256 --image-hw 150 200 --with-input
"$PY" tests/parity/gen_fixtures.py --out "$OUT" --prefix g512_ --seed 2 \
  --embed-dim 96 --depth 3 --heads 3 --global 2 --image-size 512 --image-hw 300 233 \
  --cases points_multi points_box box_single
"$PY" tests/parity/gen_fixtures.py --out "$OUT" --prefix g1024_ --seed 3 \
  --embed-dim 32 --depth 2 --heads 2 --global 1 --image-size 1024 --image-hw 480 640 \
  --cases points_box
# The bundled model's kind of geometry: patch 8 (finer masks), window 8.
"$PY" tests/parity/gen_fixtures.py --out "$OUT" --prefix p8_ --seed 4 \
  --embed-dim 64 --depth 2 --heads 2 --global 1 --image-size 256 --patch 8 --window 8 \
  --image-hw 256 256 --cases points_box box_single points_multi points_mask
touch "$OUT/.complete"
