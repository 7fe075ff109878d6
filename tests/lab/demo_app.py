"""`python -m tests.lab.demo_app apply|break|delete`: the example shop (config/examples/shop) in the lab.

Job: for `make demo`'s live part, turn the shop's manifests into lab objects: its namespaces, one pod per
workload as its controller would make it (the lab has no controller-manager: owner reference, and for a
Deployment the ReplicaSet's pod-template-hash), with no command so that the lab agent runs a listener on
every declared container port; its Service and policies; `break` applies config/examples/shop-changed's
policies; `delete` removes the shop's namespaces with everything in them. Waits for kube-router after each
change. Must not: touch any namespace the shop does not declare, or talk to anything but the lab (admin).
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from . import kube
from .fixtures import Lab
from .rest import ApiError

EXAMPLES = Path(__file__).resolve().parents[2] / "config" / "examples"
TEMPLATE_HASH = "6b7f9"  # any 5+ alphanumerics: the planner follows a Deployment through its ReplicaSet name


def _load(path: Path) -> list[dict[str, Any]]:
    return kube.documents(path.read_text())


def _owner(kind: str, name: str, api_version: str = "apps/v1") -> list[dict[str, Any]]:
    return [{"apiVersion": api_version, "kind": kind, "name": name, "uid": str(uuid.uuid4()), "controller": True}]


def workload_pod(obj: dict[str, Any]) -> dict[str, Any]:
    """The pod a Deployment's ReplicaSet or a StatefulSet would create first (image ignored by the lab)."""
    name, tmpl = obj["metadata"]["name"], obj["spec"]["template"]
    labels = dict(tmpl["metadata"].get("labels") or {})
    containers = [{k: v for k, v in c.items() if k not in ("command", "args")} for c in tmpl["spec"]["containers"]]
    if obj["kind"] == "StatefulSet":
        pod_name, owner = f"{name}-0", _owner("StatefulSet", name)
    else:
        labels["pod-template-hash"] = TEMPLATE_HASH
        pod_name, owner = f"{name}-{TEMPLATE_HASH}-{uuid.uuid4().hex[:5]}", _owner("ReplicaSet",
                                                                                  f"{name}-{TEMPLATE_HASH}")
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name, "labels": labels, "ownerReferences": owner},
            "spec": {"containers": containers, "restartPolicy": "Always"}}


def namespaces(app: Path) -> list[str]:
    return [d["metadata"]["name"] for d in _load(app / "namespaces.yaml") if d["kind"] == "Namespace"]


def apply(lab: Lab, app: Path) -> None:
    lab.apply(_load(app / "namespaces.yaml"))
    others = []
    for obj in _load(app / "workloads.yaml"):
        if obj["kind"] in ("Deployment", "StatefulSet"):
            ns = obj["metadata"]["namespace"]
            pod = lab.run_pods(ns, [workload_pod(obj)])
            print(f"  pod {ns}/{next(iter(pod))} running ({obj['kind']} {obj['metadata']['name']})")
        else:
            others.append(obj)
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
