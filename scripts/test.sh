#!/usr/bin/env bash
# The test command: install (scripts/setup.sh), then the whole test suite.
# Extra arguments go to pytest. "No tests collected" (pytest exit 5) is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
VENV=${PYSPARSE_VENV:-.venv}
# (src/ layout: the source tree never shadows the installed package.)
"$VENV/bin/pytest" -p no:cacheprovider "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
fi
exit $rc
