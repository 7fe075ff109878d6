"""Hypothesis strategies for bad input: valid seeds made type-confused and truncated, and the one check that
matters for all of them (a parser returns, or raises our own one-line error; nothing else).

Shapes: a value replaced by one of another type (a list where a mapping belongs, a number for a string, null,
a mapping for a list...), a key deleted, a list or mapping cut short, a value wrapped in a list; texts (YAML,
JSON, termination messages) cut at any point. Runs are derandomized (the same examples on every machine, no
example database needed) and bounded (FUZZ_EXAMPLES), so CI stays stable and fast.
This module must not know what any parser accepts: it only breaks shapes and checks the error contract.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from monitor.errors import NetpolDriftError

FUZZ_EXAMPLES = 200
fuzz_settings = settings(max_examples=FUZZ_EXAMPLES, derandomize=True, deadline=None, database=None,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                HealthCheck.function_scoped_fixture])

SCALARS = (st.none() | st.booleans() | st.integers(-3, 70000) | st.floats(allow_nan=False, allow_infinity=False)
           | st.text(max_size=6) | st.sampled_from(["", "80", "http", "TCP", "10.0.0.1", "0.0.0.0/0", "a/b",
                                                     "²", "-1", "In", "Allow", "True"]))
JSONISH = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=5)


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def _parent(obj: Any, path: tuple) -> Any:
    for step in path[:-1]:
        obj = obj[step]
    return obj


def _confuse_once(draw, obj: Any) -> Any:
    path = draw(st.sampled_from(_paths(obj)))
    op = draw(st.sampled_from(("replace", "replace", "retype", "delete", "truncate", "wrap")))
    value = _parent(obj, path)[path[-1]] if path else obj
    if op == "replace":
        new = draw(JSONISH)
    elif op == "retype":  # the same content in the wrong container, or a scalar where a container belongs
        new = (list(value.values()) if isinstance(value, dict) else
               dict(enumerate(value)) if isinstance(value, list) else
               {"value": value} if draw(st.booleans()) else [value])
        if isinstance(new, dict):
            new = {str(k): v for k, v in new.items()}
    elif op == "wrap":
        new = [value]
    elif op == "truncate" and isinstance(value, (list, dict)) and value:
        cut = draw(st.integers(0, len(value) - 1))
        new = value[:cut] if isinstance(value, list) else dict(list(value.items())[:cut])
    elif op == "delete" and path:
        del _parent(obj, path)[path[-1]]
        return obj
    else:
        new = draw(SCALARS)
    if not path:
        return new
    _parent(obj, path)[path[-1]] = new
    return obj


@st.composite
def confused(draw, seeds: list[Any] | tuple[Any, ...]) -> Any:
    """One of the seeds, deep-copied and broken in one to three places."""
    obj = copy.deepcopy(draw(st.sampled_from(list(seeds))))
    for _ in range(draw(st.integers(1, 3))):
        obj = _confuse_once(draw, obj)
    return obj


@st.composite
def truncated(draw, texts: list[str] | tuple[str, ...]) -> str:
    """One of the texts cut at any point (a half-written file, a cut termination message)."""
    text = draw(st.sampled_from(list(texts)))
    return text[: draw(st.integers(0, len(text)))]


def only_our_error(fn: Callable[..., Any], *args: Any, allowed: tuple[type[BaseException], ...] = ()) -> Any:
    """fn(*args), which may return or raise our error (one line, non-empty); any other exception fails."""
    try:
        return fn(*args)
    except (NetpolDriftError, *allowed) as e:
        message = str(e)
        assert message and "\n" not in message, repr(message)
        return e


def well_typed(obj: Any) -> None:
    """A parser's result holds what its type hints say (a str is a str, not a mapping that slipped through):
    each frozen dataclass of ours survives the strict JSON decoder that reads stored snapshots and bundles."""
    from monitor.models import to_jsonable
    from monitor.snapshot import from_jsonable

    for item in obj if isinstance(obj, (list, tuple)) else [obj]:
        assert from_jsonable(type(item), to_jsonable(item), type(item).__name__) == item
