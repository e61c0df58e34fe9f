"""Running a snippet in a child interpreter under an address-space and a CPU-time limit.

For inputs that, when a bug is back, allocate gigabytes, loop for hours or crash:
the child dies or reports instead of the test process (or the shared machine).
The child prints one JSON line last; ``run_limited`` returns it, or a dict whose
"outcome" (and "type") say how the child ended (killed by its CPU limit, by a signal,
an exit status (a sanitizer report), timed out).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile

# Prepended to every snippet: limits relative to the child's state after its imports.
_PRELUDE = r"""
import json, resource, sys, time
import numpy as np
import pysparse as ps
ps.set_num_threads(1)

def _vm_bytes():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")

if int(sys.argv[1]) >= 0:
    _as = _vm_bytes() + int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (_as, _as))
_cpu = int(resource.getrusage(resource.RUSAGE_SELF).ru_utime) + int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_CPU, (_cpu, _cpu + 5))
ARGS = sys.argv[3:]

def report(**kw):
    print(json.dumps(kw), flush=True)

def outcome_of(fn):
    '''{"type": exception type name or None, "message": ...} of calling fn().'''
    try:
        with np.errstate(all="ignore"):
            out = fn()
        return {"type": None, "message": str(out)[:300]}
    except Exception as e:
        return {"type": type(e).__name__, "message": str(e)[:300]}
"""


def run_limited(code: str, *args: str, address_space: int | None = 1 << 30, cpu_seconds: int = 20,
                timeout: float = 300) -> dict:
    """Run ``code`` (after the prelude above: np, ps, ARGS, report, outcome_of) in a child.

    ``address_space`` bytes over what the child holds after importing pysparse (None: no
    limit, for ASan, which reserves terabytes of shadow memory, and emulators); the child is
    PYSPARSE_TEST_PYTHON when set (the aarch64 job: an interpreter under qemu), and
    child runs from a temporary directory (the source tree's ./pysparse, without a
    compiled _core, would shadow the install)."""
    with tempfile.TemporaryDirectory() as cwd:
        try:
            python = shlex.split(os.environ.get("PYSPARSE_TEST_PYTHON", "")) or [sys.executable]
            r = subprocess.run([*python, "-c", _PRELUDE + code, str(-1 if address_space is None else address_space),
                                str(cpu_seconds), *args],
                               capture_output=True, text=True, timeout=timeout, cwd=cwd)
        except subprocess.TimeoutExpired:
            return _died(f"timed out after {timeout} s", "")
    if r.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return _died(f"killed after {cpu_seconds} s of CPU", r.stderr)
    if r.returncode < 0:
        return _died(f"crashed: {signal.Signals(-r.returncode).name}", r.stderr)
    if r.returncode != 0 or not r.stdout.strip():
        return _died(f"exit status {r.returncode}", r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def _died(how: str, stderr: str) -> dict:
    """A child that did not report: "type" names how it ended, so no expected outcome matches it."""
    return {"outcome": how, "type": f"<child {how}>", "stderr": stderr[-2000:]}
