"""pytest-benchmark suite setup: `python -m pytest bench --benchmark-only`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see report.py
os.environ.setdefault("KMP_BLOCKTIME", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent))
