#!/usr/bin/env bash
# The whole check: set-up, lint, format, types, then every test (unit and integration against
# the emulator and Azurite). Fails on any failure, and on an empty test run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
# shellcheck disable=SC1091
. .venv/bin/activate

echo "== ruff check" >&2
ruff check .
echo "== ruff format --check" >&2
ruff format --check .
echo "== mypy auditor/ emulator/" >&2
mypy auditor emulator

echo "== pytest" >&2
set +e
python -m pytest -n 2 --dist loadfile "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure, not a pass" >&2
  exit 1
fi
exit "$rc"
