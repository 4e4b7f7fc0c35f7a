#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian machine. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

# Software Vulkan (Mesa lavapipe) so the wgpu backend runs without a GPU.
need=()
dpkg -s mesa-vulkan-drivers >/dev/null 2>&1 || need+=(mesa-vulkan-drivers libvulkan1)
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || rustup target add wasm32-unknown-unknown

# Python for the reference fixtures (Meta's segment_anything on torch) and nibabel checks.
VENV="${BRAINSAM_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import torch, segment_anything, nibabel, nrrd, pydicom, safetensors, PIL" 2>/dev/null; then
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -r tests/requirements.txt
fi

# A real T1 image for the tests when no full data set (BRAINSAM_DATA, ../shared/data) has
# one: the MNI152 template from the nilearn wheel on PyPI, into target/web-cache/.
DATA="${BRAINSAM_DATA:-../shared/data}"
[ -f "$DATA/mri/mni152_2009a_t1.nii.gz" ] || BRAINSAM_VENV="$VENV" scripts/fetch_sample.sh

# The browser app: npm packages, wasm-bindgen CLI, Chromium for its tests.
scripts/setup_web.sh --browser
