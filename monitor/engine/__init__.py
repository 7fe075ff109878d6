"""Pure NetworkPolicy semantics: selectors, connection sets, NetworkPolicy v1, the admin tiers, pod classes.

Public API: Engine(snapshot).decide(src, dst, port, protocol) -> Decision, .connections(src, dst) -> ConnSet,
and the class-level matrix in monitor.engine.matrix. Nothing here does I/O, reads the clock or imports an
outside library.
"""

from monitor.engine.connset import ALL, EMPTY, ConnSet
from monitor.engine.evaluate import Decision, Endpoint, Engine

__all__ = ["ALL", "EMPTY", "ConnSet", "Decision", "Endpoint", "Engine"]
