#!/usr/bin/env bash
# LibTorch for the native `libtorch` build (the fastest CPU backend measured here, see
# docs/speed.md): the CPU part of PyTorch 2.9.0, the version tch 0.22 binds, into
# .libtorch/ (lib/ and include/). Idempotent. Prints nothing but errors and the path.
#
# With LIBTORCH already set (e.g. to the official CPU libtorch 2.9.0 zip from pytorch.org)
# this does nothing. Otherwise it takes PyTorch's wheel from PyPI (download.pytorch.org may
# be unreachable; PyPI's Linux wheel is the CUDA build): libc10, libtorch_cpu and the small
# libtorch shim with its CUDA half unlinked (patchelf), plus the CUDA runtime and CUPTI
# stubs libtorch_cpu names (two small PyPI wheels). Nothing of CUDA is ever called.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -n "${LIBTORCH:-}" ]; then echo "$LIBTORCH"; exit 0; fi
DEST="$PWD/.libtorch"
if [ -f "$DEST/lib/libtorch_cpu.so" ] && [ -d "$DEST/include/torch" ]; then echo "$DEST"; exit 0; fi

VENV="${BRAINSAM_VENV:-.venv}"
PIP="$VENV/bin/pip"
[ -x "$PIP" ] || PIP="python3 -m pip"
command -v patchelf >/dev/null || {
  SUDO=""; if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq patchelf >/dev/null
}

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
$PIP download -q --no-deps -d "$WORK" torch==2.9.0 \
  nvidia-cuda-runtime-cu12==12.8.90 nvidia-cuda-cupti-cu12==12.8.90
mkdir -p "$WORK/x"
unzip -q -o "$WORK"/torch-2.9.0-*.whl 'torch/lib/libc10.so' 'torch/lib/libtorch.so' \
  'torch/lib/libtorch_cpu.so' 'torch/lib/libgomp*' 'torch/include/*' -d "$WORK/x"
for w in "$WORK"/nvidia_*.whl; do unzip -q -o "$w" 'nvidia/*/lib/*.so.12' -d "$WORK/x"; done

rm -rf "$DEST.tmp" && mkdir -p "$DEST.tmp/lib"
mv "$WORK/x/torch/include" "$DEST.tmp/"
mv "$WORK"/x/torch/lib/* "$DEST.tmp/lib/"
mv "$WORK"/x/nvidia/*/lib/*.so.12 "$DEST.tmp/lib/"
patchelf --remove-needed libtorch_cuda.so "$DEST.tmp/lib/libtorch.so"
rm -rf "$DEST" && mv "$DEST.tmp" "$DEST"
echo "$DEST"
