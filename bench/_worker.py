"""A benchmark worker process spoken to in JSON lines: one per build or venv being compared.

Two builds of pysparse, or pysparse and a peer runtime with conflicting pins, cannot share
one process; the parent starts one worker each and interleaves its requests between them.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any, IO


class Worker:
    def __init__(self, python: str, name: str, script: str, env: dict[str, str], cwd: str,
                 stderr: IO[str] | int | None = None) -> None:
        self.name = name
        self.p = subprocess.Popen([os.path.abspath(python), "-c", script], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=stderr, text=True, env=dict(os.environ, **env),
                                  cwd=cwd)

    def ask(self, cmd: dict[str, Any]) -> dict[str, Any]:
        assert self.p.stdin is not None and self.p.stdout is not None
        self.p.stdin.write(json.dumps(cmd) + "\n")
        self.p.stdin.flush()
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name} died")
        return json.loads(line)

    def close(self) -> None:
        assert self.p.stdin is not None
        self.p.stdin.close()
        self.p.wait(timeout=60)
