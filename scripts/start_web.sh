#!/usr/bin/env bash
# npm start: installs what is missing, builds the static site (dist/) and serves it on
# localhost; the page opens on the bundled sample MRI with the bundled model.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_web.sh
scripts/build_web.sh dist
PORT="${PORT:-8080}"
url="http://127.0.0.1:$PORT/"
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && command -v xdg-open >/dev/null; then
  (sleep 1 && xdg-open "$url" >/dev/null 2>&1 || true) &
fi
exec node scripts/serve.mjs dist "$PORT"
