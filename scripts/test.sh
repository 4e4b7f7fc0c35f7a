#!/usr/bin/env bash
# Every test: Rust unit and integration tests (Flex CPU and wgpu on software Vulkan),
# parity with Meta's reference, the wasm32 build of the library.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/gen_parity_fixtures.sh
# BRAINSAM_VENV may be relative to the checkout or absolute.
VENV="${BRAINSAM_VENV:-.venv}"
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
export BRAINSAM_PYTHON="$VENV/bin/python"
# Mesa's Vulkan loader complains on every device open without a runtime dir.
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
  export XDG_RUNTIME_DIR="${TMPDIR:-/tmp}/brainsam-xdg-$(id -u)"
  mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi
# One dev-profile build serves every test binary (dependencies are optimised in dev).
cargo test -p brainsam --features wgpu --lib --bins
# Parity prints its measured errors and timings per fixture.
cargo test -p brainsam --features wgpu --test parity_cpu --test parity_wgpu -- --nocapture
# Parity on LibTorch too, where asked (downloads PyTorch's 900 MB wheel once, builds tch).
if [ "${BRAINSAM_LIBTORCH:-0}" = 1 ]; then
  scripts/cargo_libtorch.sh test --features libtorch --test parity_cpu -- --nocapture
fi
# The page's JSDoc types (worker protocol, engine replies) checked by TypeScript.
npm run --silent typecheck
# The browser app in headless Chromium (WebGPU on SwiftShader, CPU fallback); building it
# is the crate's wasm32 build check.
scripts/test_e2e.sh
echo "all tests passed"
