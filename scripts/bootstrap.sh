#!/usr/bin/env bash
# Idempotent set-up on a fresh machine (Python 3.11 + Node 20): a virtualenv with the Python
# dependencies and node_modules with Azurite and Microsoft's Kusto parser. Re-installs only
# when a requirements or lock file changed.
set -euo pipefail
cd "$(dirname "$0")/.."

python_bin=${PYTHON:-}
if [ -z "$python_bin" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python_bin=$candidate; break; fi
  done
fi
[ -n "$python_bin" ] || { echo "bootstrap: Python 3.11 is required" >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $python_bin" >&2
  "$python_bin" -m venv .venv
fi

py_stamp=.venv/.requirements.sha256
py_hash=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$py_stamp" 2>/dev/null || true)" != "$py_hash" ]; then
  echo "bootstrap: installing Python dependencies" >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  echo "$py_hash" > "$py_stamp"
fi

node_stamp=node_modules/.package-lock.sha256
node_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ "$(cat "$node_stamp" 2>/dev/null || true)" != "$node_hash" ]; then
  echo "bootstrap: installing Node packages (npm ci)" >&2
  npm ci --no-audit --no-fund --loglevel=error
  echo "$node_hash" > "$node_stamp"
fi

# The browser tests (tests/integration/browser/) drive Debian's Chromium with its chromedriver,
# never a downloaded build. Installed here when this is Debian and we are root; elsewhere
# those tests skip, except under CI=true, where they fail.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing chromium and chromium-driver (apt-get)" >&2
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >&2
  else
    echo "bootstrap: no chromium/chromedriver (install Debian's chromium chromium-driver);" \
      "the browser tests will skip (and fail under CI=true)" >&2
  fi
fi
