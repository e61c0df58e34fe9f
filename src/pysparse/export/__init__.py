"""torch model -> runtime graph (the stage of ``pysparse.save`` before the file is written).

``tracer`` traces and walks the graph, ``modules`` maps nn.Modules, ``functions``
maps functions and tensor methods, ``base`` holds the graph builder they share;
``verify`` checks the runtime graph's outputs against torch before ``save`` writes.
``bert`` reads Hugging Face BertModel encoders by structure instead of tracing them.
"""

from __future__ import annotations

from .base import UnsupportedOp
from .tracer import export

__all__ = ["UnsupportedOp", "export"]
