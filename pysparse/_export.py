"""The old import path of the exporter (``pysparse.io`` imports ``from ._export import export``);
the exporter is the ``pysparse.export`` package."""

from __future__ import annotations

from .export import UnsupportedOp, export

__all__ = ["UnsupportedOp", "export"]
