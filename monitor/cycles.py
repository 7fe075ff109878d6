"""Pausing Python's cycle collector while a step builds a great many small acyclic objects.

Reading 10,000 manifests, or a 40,000-cell grid from the store, makes hundreds of thousands of lists and
dicts; each full collection meanwhile rescans every object alive (a dashboard's cached grids included) for
nothing: ~20% of reading manifests, up to ~60 ms of a run page. Reference counting still frees them.
It must not import anything but the standard library.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def no_cycle_collection() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
