"""Kubernetes API helpers for the lab harness: generic apply/delete of any kind (via discovery), and waiting.

Job: talk to the lab's kube-apiserver as the harness (admin) or as the monitor's ServiceAccount. Must not: be
imported by the product (monitor/ has its own cluster.py), or talk to any API server but the lab's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client, config
from kubernetes.dynamic import DynamicClient

from . import config as C

T = TypeVar("T")

_dyn: dict[str, DynamicClient] = {}


def api_client(kubeconfig: Path = C.PATHS.admin_kubeconfig) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))


def dynamic(kubeconfig: Path = C.PATHS.admin_kubeconfig) -> DynamicClient:
    key = str(kubeconfig)
    if key not in _dyn:
        _dyn[key] = DynamicClient(api_client(kubeconfig))
    return _dyn[key]


def documents(manifests: str | Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """YAML text (multi-document, `kind: List` too), one dict, or an iterable of dicts -> list of objects."""
    if isinstance(manifests, str):
        docs = [d for d in yaml.safe_load_all(manifests) if d]
    elif isinstance(manifests, Mapping):
        docs = [dict(manifests)]
    else:
        docs = [dict(d) for d in manifests]
    out: list[dict[str, Any]] = []
    for d in docs:
        if str(d.get("kind", "")).endswith("List") and isinstance(d.get("items"), list):
            out.extend(d["items"])
        else:
            out.append(d)
    return out


def apply(manifests: str | Mapping[str, Any] | Iterable[Mapping[str, Any]], namespace: str | None = None,
          kubeconfig: Path = C.PATHS.admin_kubeconfig) -> list[Any]:
    """Server-side apply of every object (field manager `lab`, conflicts forced); namespace fills in gaps."""
    dyn = dynamic(kubeconfig)
    results = []
    for obj in documents(manifests):
        res = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        ns = None
        if res.namespaced:
            ns = obj.get("metadata", {}).get("namespace") or namespace or "default"
            obj = {**obj, "metadata": {**obj["metadata"], "namespace": ns}}
        results.append(dyn.server_side_apply(res, body=obj, name=obj["metadata"]["name"], namespace=ns,
                                             field_manager="lab", force_conflicts=True))
    return results


def delete(manifests: str | Mapping[str, Any] | Iterable[Mapping[str, Any]], namespace: str | None = None,
           kubeconfig: Path = C.PATHS.admin_kubeconfig) -> None:
    from kubernetes.dynamic.exceptions import NotFoundError

    dyn = dynamic(kubeconfig)
    for obj in documents(manifests):
        res = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        ns = (obj.get("metadata", {}).get("namespace") or namespace or "default") if res.namespaced else None
        with contextlib.suppress(NotFoundError):
            dyn.delete(res, name=obj["metadata"]["name"], namespace=ns)


def wait_for(what: str, fn: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.1) -> T:
    """Calls fn until it returns something truthy; raises TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = fn()
            if value:
                return value
        except AssertionError:
            raise  # fn's way to say "this will never happen"
        except Exception as e:  # keep polling through transient API errors, report the last one
            last_exc = e
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}"
                               + (f" (last error: {last_exc})" if last_exc else ""))
        time.sleep(interval)
