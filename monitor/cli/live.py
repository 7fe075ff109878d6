"""Sub-commands of the live part: `run`, `suite generate` and `probe-agent`. Parse, call, print; no logic.

This module must import nothing heavy at module level: `probe-agent` starts in every probe pod, so the
cluster adapter, engine and planner are imported inside the commands that need them.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from monitor.probe import agent

    p = sub.add_parser("probe-agent", help="(inside probe pods) probe targets, write the termination message",
                       description="Probes every target in parallel and writes the compact result to the "
                                   "termination message file. Runs inside probe pods; needs no API access.")
    agent.add_arguments(p)
    p.set_defaults(func=lambda a: agent.run_agent(a.targets, a.timeout, a.result_file))
