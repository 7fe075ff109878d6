"""Sub-commands of the offline analyzer (placeholder: filled in with the engine)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    del sub
