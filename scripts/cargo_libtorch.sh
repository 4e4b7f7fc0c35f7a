#!/usr/bin/env bash
# cargo with the `libtorch` feature's environment: LibTorch 2.9.0 from setup_libtorch.sh
# (or $LIBTORCH). Usage: scripts/cargo_libtorch.sh build --release --features libtorch
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
LIBTORCH="$("$root/scripts/setup_libtorch.sh")"
export LIBTORCH LIBTORCH_CXX11_ABI="${LIBTORCH_CXX11_ABI:-1}"
cd "$root/crate" && exec cargo "$@"
