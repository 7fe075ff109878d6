"""Sub-commands of the live part (placeholder until that part lands: registers nothing)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    del sub
