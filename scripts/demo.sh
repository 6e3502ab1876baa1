#!/usr/bin/env bash
# The demo: set-up, then the auditor against the emulated demo fleet with results in Azurite and
# the API on http://127.0.0.1:7071/api. `--once` prints the audit and exits.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python scripts/demo.py "$@"
