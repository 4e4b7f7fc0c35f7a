#!/usr/bin/env bash
# The browser app in headless Chromium: WebGPU (SwiftShader without a GPU) and the CPU
# fallback. Builds the CLI (test inputs, re-reading exports) and the static site first.
# Screenshots and logs: target/e2e/.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_web.sh --browser
nice -n 10 cargo build -p brainsam --features wgpu --bin brainsam
scripts/build_web.sh dist
node --test --test-concurrency=1 tests/e2e/app.test.mjs
