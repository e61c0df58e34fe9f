#!/usr/bin/env bash
# The main job: install (scripts/setup.sh), then train a teacher on MNIST, prune
# a student to 90% while distilling, convert, save, load without torch, check
# accuracy and print the speedup over the dense torch model.
# Extra arguments go to examples/demo.py (e.g. --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
VENV=${PYSPARSE_VENV:-.venv}
# Run from the examples directory so the installed package (not the source
# tree, which has no compiled _core) is imported.
cd examples && exec "../$VENV/bin/python" demo.py "$@"
