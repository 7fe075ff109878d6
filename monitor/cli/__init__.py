"""The `netpol-drift` command line: parse, call the stage functions, print. No analysis logic lives here.

Each sub-module registers its own sub-commands (offline analysis, live runs, history). Every error of ours
becomes one line on stderr and exit code 2; a traceback is always a bug.
"""

from __future__ import annotations

import argparse
import sys

from monitor import __version__
from monitor.errors import NetpolDriftError


def build_parser(prog: str = "netpol-drift") -> argparse.ArgumentParser:
    from monitor.cli import dashboard, history, live, offline, serve

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Proves what Kubernetes NetworkPolicies really do, and alerts when that changes.")
    parser.add_argument("--version", action="version", version=f"netpol-drift {__version__}")
    parser.add_argument("--config", metavar="FILE", help="settings file (YAML); NETPOL_DRIFT_* env overrides it")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (offline, live, history, serve, dashboard):
        module.register(sub)
    return parser


def warn(message: str) -> None:
    """One warning line on stderr: something the user should know that does not stop the command."""
    print(f"netpol-drift: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None, prog: str = "netpol-drift") -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["probe-agent"]:
        # Runs once in every probe pod: skip building the whole CLI (and its imports) for it.
        from monitor.probe.agent import main as agent_main

        return agent_main(argv[1:])
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except NetpolDriftError as e:
        print(f"netpol-drift: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `netpol-drift matrix --format tsv | head` is normal use, not an error.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130


# kubectl's own connection flags, which kubectl users put right after the plugin's name.
_KUBECTL_FLAGS = ("--kubeconfig", "--context")


def kubectl_main(argv: list[str] | None = None) -> int:
    """`kubectl netpol-drift ...`: the console script `kubectl-netpol_drift`, found by kubectl's plugin lookup.

    The same commands as `netpol-drift`; `--kubeconfig FILE` and `--context NAME` may also come before the
    command, as with kubectl (`kubectl netpol-drift --context prod run --once`), and are handed to it.
    Which file and context they pick follows kubectl: monitor/cluster.py's `ClusterAdapter.connect`.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    front: list[str] = []  # netpol-drift's own options before the command (--config FILE, --version)
    hoisted: list[str] = []
    while argv and argv[0].startswith("-"):
        flag = argv.pop(0)
        name = flag.split("=", 1)[0]
        into = hoisted if name in _KUBECTL_FLAGS else front
        into.append(flag)
        if "=" not in flag and name in (*_KUBECTL_FLAGS, "--config") and argv:
            into.append(argv.pop(0))
    return main(front + argv + hoisted, prog="kubectl netpol-drift")
