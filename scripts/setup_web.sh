#!/usr/bin/env bash
# Installs what building the browser app needs (and, with --browser, what testing it
# needs: Debian's Chromium). Idempotent: only what is missing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then SUDO=sudo; fi

rustup target add wasm32-unknown-unknown >/dev/null 2>&1 || rustup target add wasm32-unknown-unknown

# npm packages: playwright-core (drives the system Chromium), binaryen (wasm-opt; Debian's
# binaryen 108 writes modules that browsers reject), typescript (checks the page's JSDoc
# types), and what the page ships: niivue (the 3-D view) and dcm2niix's wasm build (DICOM in).
if [ ! -x node_modules/.bin/wasm-opt ] || [ ! -d node_modules/playwright-core ] || [ ! -x node_modules/.bin/tsc ] \
  || [ ! -f node_modules/@niivue/niivue/dist/index.js ] || [ ! -f node_modules/@niivue/dcm2niix/dist/index.jpeg.js ]; then
  npm ci --no-audit --no-fund
fi

# wasm-bindgen's CLI must be exactly the crate's wasm-bindgen version. Installed without
# --locked: with it, one of its pinned dependencies is missing from the registry mirror.
want=$(sed -n '/^name = "wasm-bindgen"$/{n;s/^version = "\(.*\)"$/\1/p;}' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | cut -d' ' -f2 || true)
if [ "$have" != "$want" ]; then
  cargo install wasm-bindgen-cli --version "$want"
fi

# pip fetches the sample MRI (the nilearn wheel); a venv guarantees pip exists.
VENV="${BRAINSAM_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"

if [ "${1:-}" = --browser ] && ! command -v chromium >/dev/null; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
