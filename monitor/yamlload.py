"""YAML from outside (config, suite, manifests, kubeconfig lists) read with a bound on what aliases expand to.

PyYAML builds an alias as a second reference to the same object, so a "billion laughs" document (nine anchors,
each a list of nine aliases of the one before) loads in microseconds and then costs 9^9 steps to whoever walks
it: a validator that checks every item hangs and eats memory. Here each document's node graph is measured
before anything is built: the nodes it holds once every alias is expanded (each distinct node counted once, and
once more per extra reference) may exceed the nodes written in the file by at most ALIAS_EXPANSION_LIMIT, and
an alias that contains itself is refused. Both become a `yaml.YAMLError` with a position, which
`errors.syntax_error` turns into the usual one line.
This module must not build values itself (PyYAML or manifests.py do) nor import anything heavy at import time.
"""

from __future__ import annotations

import functools
import re
from typing import Any

# Anchors reused a few times (a shared label set, a port list) add a few hundred nodes; an alias bomb adds
# millions. 100,000 is far above the first and stops the second before it costs anything.
ALIAS_EXPANSION_LIMIT = 100_000


def check_aliases(node: Any, limit: int = ALIAS_EXPANSION_LIMIT) -> None:
    """Raises yaml.YAMLError when the document under `node` expands (through aliases) to more than `limit`
    nodes beyond those it holds, or holds an alias of a node that contains it. Linear in the distinct nodes."""
    expanded: dict[int, int] = {}  # id(node) -> its size with aliases expanded (once finished)
    open_nodes: set[int] = set()
    stack: list[tuple[Any, bool]] = [(node, False)]
    while stack:
        current, done = stack.pop()
        key = id(current)
        children = _children(current)
        if done:
            open_nodes.discard(key)
            expanded[key] = 1 + sum(expanded[id(c)] for c in children)
            if expanded[key] - len(expanded) > limit:
                raise _refused(current, f"its aliases expand to more than {limit:,} nodes (an alias bomb?)")
            continue
        if key in expanded:
            continue
        if key in open_nodes:
            raise _refused(current, "an alias refers to a node that contains it")
        open_nodes.add(key)
        stack.append((current, True))
        for child in children:
            if id(child) in open_nodes:
                raise _refused(child, "an alias refers to a node that contains it")
            if id(child) not in expanded:
                stack.append((child, False))


def _children(node: Any) -> list:
    value = node.value
    if isinstance(value, list):
        if value and isinstance(value[0], tuple):  # a mapping: (key, value) pairs
            return [n for pair in value for n in pair]
        return value
    return []


def _refused(node: Any, problem: str) -> Exception:
    import yaml

    return yaml.MarkedYAMLError(problem=problem, problem_mark=node.start_mark)


def bounded_loader(base: type) -> type:
    """`base` (a PyYAML loader class) that checks every document before it constructs it."""

    class Bounded(base):  # type: ignore[misc, valid-type]
        def construct_document(self, node: Any) -> Any:
            check_aliases(node)
            return super().construct_document(node)

    Bounded.__name__ = f"Bounded{base.__name__}"
    return Bounded


# An anchor (`&name`) where YAML allows one: at the start of a value, after a space, `[`, `{` or `,`. Without
# one, no alias can resolve (an undefined alias is a syntax error), so there is nothing to measure.
_ANCHOR = re.compile(r"(?:^|[\s\[{,])&[^\s\[\]{},]")


def may_alias(text: str) -> bool:
    """Whether the text could hold an alias at all: the measuring (a walk over every node, seconds for a
    10,000-object dump) is skipped for the files that have no anchor, which is every file kubectl writes."""
    return "*" in text and _ANCHOR.search(text) is not None


def safe_load(text: str) -> Any:
    """yaml.safe_load with the alias bound; raises yaml.YAMLError (PyYAML's own loader and messages, as
    yaml.safe_load: config and suite files are small, and their error messages are part of our tests)."""
    import yaml

    return yaml.load(text, Loader=_safe_loader(may_alias(text)))  # SafeLoader subclasses only


@functools.cache
def _safe_loader(bounded: bool) -> type:
    import yaml

    return bounded_loader(yaml.SafeLoader) if bounded else yaml.SafeLoader
