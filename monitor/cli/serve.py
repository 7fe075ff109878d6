"""The `serve` sub-command: the long-running service (monitor.service). Parse and call; no logic here."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run forever: on a schedule and on every policy/label change, with metrics",
                       description="The in-cluster service: runs the suite every schedule.interval_seconds and "
                                   "a few seconds after a NetworkPolicy, admin policy, namespace label or pod "
                                   "label/IP change, stores every run, serves /metrics, /healthz and /readyz on "
                                   "web.listen. Several replicas elect one prober through a Lease. A changed "
                                   "config or suite file is reloaded; SIGTERM finishes or aborts the run.")
    # Also accepted after the sub-command (`serve --config FILE`); SUPPRESS keeps the global one otherwise.
    p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                   help="settings file (YAML); NETPOL_DRIFT_* env overrides it")
    p.set_defaults(func=serve_command)


def serve_command(args: argparse.Namespace) -> int:
    from monitor.service import serve

    return serve(args.config)
