"""`python -m tests.lab.demo_app apply|break|delete`: the example shop (config/examples/shop) in the lab.

Job: for `make demo`'s live part, apply the shop's manifests as they are: its namespaces, its Deployments and
StatefulSet (kube-controller-manager makes their pods; they have no command, so the lab agent runs a listener
on every declared container port), its Service and policies; `break` applies config/examples/shop-changed's
policies; `delete` removes the shop's namespaces (the namespace controller empties them). Waits for each
rollout and for kube-router after each change. Must not: touch any namespace the shop does not declare, or
talk to anything but the lab (admin).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from . import kube
from .fixtures import Lab
from .rest import ApiError

EXAMPLES = Path(__file__).resolve().parents[2] / "config" / "examples"


def _load(path: Path) -> list[dict[str, Any]]:
    return kube.documents(path.read_text())


def namespaces(app: Path) -> list[str]:
    return [d["metadata"]["name"] for d in _load(app / "namespaces.yaml") if d["kind"] == "Namespace"]


def apply(lab: Lab, app: Path) -> None:
    lab.apply(_load(app / "namespaces.yaml"))
    workloads = [o for o in _load(app / "workloads.yaml") if o["kind"] in ("Deployment", "StatefulSet")]
    others = [o for o in _load(app / "workloads.yaml") if o not in workloads]
    lab.apply(workloads)
    for obj in workloads:
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        pods = lab.wait_rollout(ns, obj["kind"], name)
        print(f"  {obj['kind']} {ns}/{name}: pod(s) {', '.join(p['metadata']['name'] for p in pods)} running")
    since = time.time()
    lab.apply(others + _load(app / "policies.yaml"))
    lab.wait_synced(since=since)
    print(f"  applied {len(others)} Service(s) and the policies of {app}; kube-router synced")


def apply_policies(lab: Lab, app: Path) -> None:
    since = time.time()
    lab.apply(_load(app / "policies.yaml"))
    lab.wait_synced(since=since)
    print(f"  applied the policies of {app}; kube-router synced")


def delete(lab: Lab, app: Path) -> None:
    for ns in namespaces(app):
        try:
            lab.api.get(f"/api/v1/namespaces/{ns}")
        except ApiError as e:
            if e.status == 404:
                continue
            raise
        lab.delete_namespace(ns)
        print(f"  deleted namespace {ns}")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.lab.demo_app", description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=("apply", "break", "revert", "delete"))
    ap.add_argument("--app", type=Path, default=EXAMPLES / "shop", help="manifests directory (default: the shop)")
    ap.add_argument("--changed", type=Path, default=EXAMPLES / "shop-changed",
                    help="`break` applies this directory's policies.yaml")
    a = ap.parse_args(argv)
    lab = Lab()
    if a.action == "apply":
        apply(lab, a.app)
    elif a.action == "break":
        apply_policies(lab, a.changed)
    elif a.action == "revert":  # the app's own policies again
        apply_policies(lab, a.app)
    else:
        delete(lab, a.app)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
