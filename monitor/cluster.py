"""The cluster adapter: the only module that imports `kubernetes`.

Job: log in (in-cluster service account, or a kubeconfig and context), list and watch what a snapshot needs
(NetworkPolicies, AdminNetworkPolicies/BaselineAdminNetworkPolicies v1alpha1 and ClusterNetworkPolicies
v1alpha2 where their CRDs exist, Namespaces, Pods, Services, EndpointSlices), and create, watch and delete probe
pods. Every call has a timeout and is retried with backoff when the failure is transient (network, 429, 5xx).
API responses are decoded straight from their JSON into plain dicts (`_preload_content=False`: the client's
model classes are never built, which also makes lists and watches of many pods several times cheaper) and then
become models through the parsers of monitor.manifests, so no kubernetes object ever leaves this module.
This module must not decide anything about policies, plans or verdicts, nor read settings files: the caller
passes ClusterSettings in.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import urllib3
import yaml
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from monitor.errors import (
    ClusterConfigError,
    ClusterConflictError,
    ClusterError,
    ClusterForbiddenError,
    ClusterNotFoundError,
    ClusterRejectedError,
    ClusterThrottledError,
    ClusterUnavailableError,
    ClusterUnreachableError,
    InputError,
)
from monitor.manifests import parse_admin_policy, parse_namespace, parse_network_policy, parse_pod, parse_service
from monitor.models import AdminPolicy, Namespace, NetworkPolicy, Pod, Service
from monitor.probe.pods import PROBE_LABEL, RUN_LABEL, RUN_LEASE_LABEL, ProbePodState, RunLease
from monitor.settings import ClusterSettings
from monitor.topology import owning_workload

log = logging.getLogger(__name__)
T = TypeVar("T")

# (kind, version, plural): the admin-policy APIs we read when the cluster serves them.
ADMIN_POLICY_APIS = (
    ("AdminNetworkPolicy", "v1alpha1", "adminnetworkpolicies"),
    ("BaselineAdminNetworkPolicy", "v1alpha1", "baselineadminnetworkpolicies"),
    ("ClusterNetworkPolicy", "v1alpha2", "clusternetworkpolicies"),
)
ADMIN_POLICY_GROUP = "policy.networking.k8s.io"
_TRANSIENT_STATUS = {429, 500, 502, 503, 504}
_MAX_RETRY_AFTER = 10.0  # a longer Retry-After is not waited out inside one call: the call fails, the run goes on
# Kinds with a plain list-all method to watch (admin-policy kinds go through the custom-objects API).
_WATCHABLE = {
    "Namespace": ("core", "list_namespace"),
    "Pod": ("core", "list_pod_for_all_namespaces"),
    "Service": ("core", "list_service_for_all_namespaces"),
    "NetworkPolicy": ("networking", "list_network_policy_for_all_namespaces"),
    "EndpointSlice": ("discovery", "list_endpoint_slice_for_all_namespaces"),
}


# Where PolicyReports live (wgpolicyk8s.io's v1alpha2, the version policy dashboards read).
POLICY_REPORT_API = ("wgpolicyk8s.io", "v1alpha2")


# ------------------------------------------------------------------------------------- plain data out of here
@dataclass(frozen=True, slots=True)
class EndpointSliceInfo:
    namespace: str
    name: str
    service: str | None  # kubernetes.io/service-name
    addresses: tuple[str, ...]  # ready endpoints only
    ports: tuple[tuple[str | None, int, str], ...]  # (name, port, protocol)


@dataclass(frozen=True, slots=True)
class ClusterEvent:
    """One watch event: what changed (the service debounces these into runs)."""

    type: str  # ADDED, MODIFIED, DELETED
    kind: str
    namespace: str | None
    name: str
    resource_version: str | None
    # A digest of only what a snapshot reads of the object (pod labels/IPs/running, namespace labels, policy
    # spec): a pod's status heartbeat changes its resourceVersion, not its fingerprint.
    fingerprint: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace or "", self.name


# ------------------------------------------------------------------------------------------------ adapter
def _as_kubectl_would(kubeconfig: str | None, context: str | None) -> tuple[str | None, str | None]:
    """The kubeconfig file(s) and context kubectl would use. An explicit file is used alone; else every file
    listed in $KUBECONFIG (os.pathsep-separated, missing ones skipped) is merged, and kubectl lets the FIRST
    file that sets a value win, the current context too (the client's loader lets the last one win, so the
    current context is picked here); else ~/.kube/config."""
    listed = os.environ.get("KUBECONFIG", "")
    if kubeconfig or not listed:
        return kubeconfig, context
    if context is None:
        for path in (os.path.expanduser(p) for p in listed.split(os.pathsep) if p):
            if os.path.exists(path):
                with open(path, encoding="utf-8") as f:
                    doc = yaml.safe_load(f)
                if isinstance(doc, dict) and doc.get("current-context"):
                    context = str(doc["current-context"])
                    break
    return listed, context


class ClusterAdapter:
    def __init__(self, api: client.ApiClient, settings: ClusterSettings) -> None:
        self._api = api
        self._settings = settings
        self._core = client.CoreV1Api(api)
        self._networking = client.NetworkingV1Api(api)
        self._discovery = client.DiscoveryV1Api(api)
        self._custom = client.CustomObjectsApi(api)
        self._coordination = client.CoordinationV1Api(api)
        self.server = api.configuration.host
        # Told of every failed call, by verb (the service counts them in a metric; this module imports none).
        self.on_api_error: Callable[[str], None] = lambda verb: None
        # Told of every call the API server throttled (429: API Priority and Fairness), by verb.
        self.on_api_throttled: Callable[[str], None] = lambda verb: None
        # Probe pods this adapter created and has not deleted: what the probe_pods_running metric shows.
        self._probe_pods: set[tuple[str, str]] = set()

    @classmethod
    def connect(cls, settings: ClusterSettings, kubeconfig: str | None = None,
                context: str | None = None) -> ClusterAdapter:
        """In-cluster config when running in a pod and no kubeconfig is given; else the kubeconfig
        (explicit, settings, $KUBECONFIG or ~/.kube/config) and its context."""
        kubeconfig = kubeconfig or settings.kubeconfig
        context = context or settings.context
        cfg = client.Configuration()
        try:
            if not kubeconfig and not context and not os.environ.get("KUBECONFIG") \
                    and os.environ.get("KUBERNETES_SERVICE_HOST"):
                config.load_incluster_config(client_configuration=cfg)
            else:
                kubeconfig, context = _as_kubectl_would(kubeconfig, context)
                config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg,
                                        persist_config=False)
        except (ConfigException, OSError, TypeError, ValueError, yaml.YAMLError, AttributeError, LookupError) as e:
            # The client's kubeconfig loader checks no types: a list where a string belongs fails as an
            # AttributeError or KeyError deep inside it. That is still a bad file, said in one line.
            where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
            why = f"malformed kubeconfig ({type(e).__name__}: {e})" if isinstance(e, (AttributeError, LookupError)) \
                else str(e)
            raise ClusterConfigError(f"cannot load cluster credentials from {where}"
                                     f"{f' (context {context})' if context else ''}: {why}") from e
        # Our own retry loop decides what is transient; urllib3's would retry refused calls silently.
        cfg.retries = False
        return cls(client.ApiClient(cfg), settings)

    def close(self) -> None:
        self._api.close()

    # -------------------------------------------------------------------------------------- call plumbing
    def _call(self, what: str, fn: Callable[..., T], *args: Any, _attempts: int | None = None,
              _time_left: Callable[[], float] | None = None, **kwargs: Any) -> T:
        """fn(*args, **kwargs) with a timeout, retried with exponential backoff while the failure is
        transient; any failure becomes one of our ClusterError subclasses, raised from the original.
        `_time_left`: seconds until the caller's deadline; a retry whose wait would end after it is not
        made (the call fails now), so a throttling server cannot hold a run past its deadline."""
        kwargs.setdefault("_request_timeout", self._settings.request_timeout_seconds)
        attempts = _attempts or self._settings.retries + 1
        for attempt in range(attempts):
            try:
                return fn(*args, **kwargs)
            except ApiException as e:
                self.on_api_error(_verb(what))
                if e.status == 429:
                    self.on_api_throttled(_verb(what))
                if e.status in _TRANSIENT_STATUS and attempt + 1 < attempts and \
                        self._backoff(what, attempt, f"HTTP {e.status}", _retry_after(e), _time_left):
                    continue
                raise _api_error(what, e) from e
            except (urllib3.exceptions.HTTPError, OSError) as e:
                self.on_api_error(_verb(what))
                if attempt + 1 < attempts and self._backoff(what, attempt, type(e).__name__, None, _time_left):
                    continue
                raise _unavailable(e)(f"{what}: API server {self.server} unreachable after {attempt + 1} "
                                      f"attempts: {e}") from e
        raise AssertionError("unreachable")  # the loop always returns or raises

    @staticmethod
    def _backoff(what: str, attempt: int, why: str, retry_after: float | None,
                 time_left: Callable[[], float] | None) -> bool:
        """Waits before the next attempt; False (no wait) when the caller's deadline comes first."""
        # A throttling server says when to come back (APF's 429 carries Retry-After): never sooner than that.
        delay = max(min(0.2 * 2 ** attempt, 5.0), min(retry_after or 0.0, _MAX_RETRY_AFTER))
        if time_left is not None and time_left() <= delay:
            log.warning("%s failed (%s); not retried: the deadline comes before the retry would (%.1fs)",
                        what, why, delay)
            return False
        log.warning("%s failed (%s); retrying in %.1fs", what, why, delay)
        time.sleep(delay)
        return True

    def _list(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict:
        """A list call decoded from JSON: {"metadata": {...}, "items": [plain dicts]}, its shape checked here so
        that the callers and the parsers only meet the objects themselves."""
        resp = self._call(what, fn, *args, _preload_content=False, **kwargs)
        try:
            data = json.loads(resp.data)
        except (ValueError, UnicodeDecodeError) as e:
            raise ClusterRejectedError(f"{what}: the API server answered something that is not JSON") from e
        if not isinstance(data, dict) or not isinstance(data.get("metadata", {}), dict):
            raise ClusterRejectedError(f"{what}: the API server answered something that is not a list")
        items = data.get("items")
        if items is None:
            items = data["items"] = []
        if not isinstance(items, list):
            raise ClusterRejectedError(f"{what}: the API server answered items that are not a list")
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise ClusterRejectedError(f"{what}: items[{i}] is not an object")
        return data

    @staticmethod
    def _typed(item: dict, kind: str, api_version: str) -> dict:
        # Items of a list response carry no kind/apiVersion; the parsers dispatch on them.
        item.setdefault("kind", kind)
        item.setdefault("apiVersion", api_version)
        return item

    # ------------------------------------------------------------------------------------------ snapshot
    def list_namespaces(self) -> tuple[Namespace, ...]:
        items = self._list("list namespaces", self._core.list_namespace)["items"]
        return tuple(parse_namespace(self._typed(i, "Namespace", "v1"), self._source("Namespace")) for i in items)

    def list_pods(self, namespace: str | None = None) -> tuple[Pod, ...]:
        """Running pods with an IP, not being deleted and not our own probe pods: the pods a flow can use."""
        selector = f"!{PROBE_LABEL}"
        if namespace:
            resp = self._list(f"list pods in {namespace}", self._core.list_namespaced_pod, namespace,
                              label_selector=selector)
        else:
            resp = self._list("list pods", self._core.list_pod_for_all_namespaces, label_selector=selector)
        pods = []
        for item in resp["items"]:
            status, meta = item.get("status"), item.get("metadata")
            # Not a usable pod: skipped. A malformed one is not skipped: the parser names the field.
            if isinstance(status, dict) and isinstance(meta, dict) and (
                    meta.get("deletionTimestamp") or status.get("phase") != "Running" or not status.get("podIP")):
                continue
            pod = parse_pod(self._typed(item, "Pod", "v1"), self._source("Pod"))
            pods.append(_stable_workload(pod))
        return tuple(pods)

    def list_services(self, namespace: str | None = None) -> tuple[Service, ...]:
        if namespace:
            resp = self._list(f"list services in {namespace}", self._core.list_namespaced_service, namespace)
        else:
            resp = self._list("list services", self._core.list_service_for_all_namespaces)
        return tuple(parse_service(self._typed(i, "Service", "v1"), self._source("Service"))
                     for i in resp["items"])

    def list_network_policies(self, namespace: str | None = None) -> tuple[NetworkPolicy, ...]:
        if namespace:
            resp = self._list(f"list networkpolicies in {namespace}",
                              self._networking.list_namespaced_network_policy, namespace)
        else:
            resp = self._list("list networkpolicies", self._networking.list_network_policy_for_all_namespaces)
        out = []
        for item in resp["items"]:
            # The API server adds status/managedFields etc.; the strict policy parser is given the spec only.
            data = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": _bare_metadata(item.get("metadata")), "spec": item.get("spec")}
            out.append(parse_network_policy(data, self._source("NetworkPolicy")))
        return tuple(out)

    def list_admin_policies(self) -> tuple[AdminPolicy, ...]:
        """Every admin-tier policy of every API the cluster serves; an API it does not serve is skipped."""
        out = []
        for kind, version, plural in ADMIN_POLICY_APIS:
            try:
                resp = self._list(f"list {plural}", self._custom.list_cluster_custom_object,
                                  ADMIN_POLICY_GROUP, version, plural)
            except ClusterNotFoundError:
                log.debug("%s/%s %s not served: no such CRD", ADMIN_POLICY_GROUP, version, plural)
                continue
            for item in resp["items"]:
                # The kind is the API's that was listed, whatever the item says.
                data = {"apiVersion": f"{ADMIN_POLICY_GROUP}/{version}", "kind": kind,
                        "metadata": _bare_metadata(item.get("metadata")), "spec": item.get("spec")}
                out.append(parse_admin_policy(data, self._source(kind)))
        return tuple(out)

    def list_endpoint_slices(self, namespace: str | None = None) -> tuple[EndpointSliceInfo, ...]:
        if namespace:
            resp = self._list(f"list endpointslices in {namespace}",
                              self._discovery.list_namespaced_endpoint_slice, namespace)
        else:
            resp = self._list("list endpointslices", self._discovery.list_endpoint_slice_for_all_namespaces)
        out = []
        for s in resp["items"]:
            # Server bookkeeping read leniently: a field of the wrong type counts as absent.
            meta = _obj(s.get("metadata"))
            addresses = tuple(sorted(
                a for ep in map(_obj, _items(s.get("endpoints")))
                if _obj(ep.get("conditions")).get("ready") is not False
                for a in _items(ep.get("addresses")) if isinstance(a, str)))
            ports = tuple(sorted(((_text(p.get("name")), p["port"], _text(p.get("protocol")) or "TCP")
                                  for p in map(_obj, _items(s.get("ports"))) if _number(p.get("port"))),
                                 key=lambda p: (p[1], p[2], p[0] or "")))
            out.append(EndpointSliceInfo(_text(meta.get("namespace")) or "", _text(meta.get("name")) or "",
                                         _text(_obj(meta.get("labels")).get("kubernetes.io/service-name")),
                                         addresses, ports))
        return tuple(out)

    def _source(self, kind: str) -> str:
        # Error messages from the parsers name the "file": here the API server and the kind.
        return f"{self.server} ({kind})"

    # ------------------------------------------------------------------------------------------- watches

    def watch_changes(self, kind: str, timeout_seconds: int,
                      resource_version: str | None = None) -> Iterator[ClusterEvent]:
        """Events of one kind for at most timeout_seconds (the server closes the watch then); the caller
        re-watches from the last resource_version, and re-lists (list_fingerprints) on ClusterConflictError
        (410 Gone: that version is too old). Admin-policy kinds are watched when served (else
        ClusterNotFoundError). Pods exclude our own probe pods."""
        fn, args, selector = self._watch_target(kind)
        for event_type, obj in self._stream(f"watch {kind}", fn, *args, timeout_seconds=timeout_seconds,
                                            resource_version=resource_version, label_selector=selector):
            if event_type == "BOOKMARK":
                continue
            meta = obj.get("metadata") or {}
            yield ClusterEvent(event_type, kind, meta.get("namespace"), meta.get("name", ""),
                               meta.get("resourceVersion"), _fingerprint(kind, obj))

    def list_fingerprints(self, kind: str) -> tuple[dict[tuple[str, str], str], str]:
        """({(namespace, name): fingerprint}, the list's resourceVersion to watch from) of one watchable kind."""
        fn, args, selector = self._watch_target(kind)
        kwargs = {"label_selector": selector} if selector else {}
        resp = self._list(f"list {kind}", fn, *args, **kwargs)
        items = {((i.get("metadata") or {}).get("namespace") or "", (i.get("metadata") or {}).get("name", "")):
                 _fingerprint(kind, i) for i in resp.get("items") or []}
        return items, (resp.get("metadata") or {}).get("resourceVersion") or ""

    def _watch_target(self, kind: str) -> tuple[Callable, tuple, str | None]:
        if kind in _WATCHABLE:
            api_name, method = _WATCHABLE[kind]
            fn = getattr({"core": self._core, "networking": self._networking,
                          "discovery": self._discovery}[api_name], method)
            return fn, (), f"!{PROBE_LABEL}" if kind == "Pod" else None
        api = next((a for a in ADMIN_POLICY_APIS if a[0] == kind), None)
        if api is None:
            raise InputError(f"cannot watch kind {kind!r}")
        return self._custom.list_cluster_custom_object, (ADMIN_POLICY_GROUP, api[1], api[2]), None

    def _stream(self, what: str, fn: Callable, *args: Any, timeout_seconds: float,
                resource_version: str | None = None,
                label_selector: str | None = None) -> Iterator[tuple[str, dict]]:
        """(event type, object as a plain dict) of one watch request, BOOKMARKs included, bounded in time both
        on the server (timeout_seconds) and on the client (read timeout a little longer)."""
        kwargs: dict[str, Any] = {"timeout_seconds": max(1, round(timeout_seconds)),
                                  "_request_timeout": (self._settings.request_timeout_seconds,
                                                       timeout_seconds + self._settings.request_timeout_seconds),
                                  "allow_watch_bookmarks": True, "deserialize": False}
        if resource_version:
            kwargs["resource_version"] = resource_version
        if label_selector:
            kwargs["label_selector"] = label_selector
        w = watch.Watch()
        try:
            for event in w.stream(fn, *args, **kwargs):
                obj = event.get("object") or {}
                if event["type"] == "ERROR":
                    code = obj.get("code")
                    if code == 410:
                        raise ClusterConflictError(f"{what}: resource version too old (410 Gone): re-list")
                    raise ClusterRejectedError(f"{what}: watch error {code}: {obj.get('message')}")
                yield event["type"], obj
        except KeyError as e:
            # kubernetes' Watch.stream with deserialize=False fails on every ERROR event (it reads
            # event['raw_object'], which only its deserializing path sets): in practice the 410 Gone after an
            # API server restart or an etcd compaction. Re-listing is the safe answer to any watch error.
            self.on_api_error("watch")
            raise ClusterConflictError(f"{what}: the watch ended with an error event (410 Gone): re-list") from e
        except ApiException as e:
            self.on_api_error("watch")
            if e.status == 429:
                self.on_api_throttled("watch")
            raise _api_error(what, e) from e
        except (urllib3.exceptions.HTTPError, OSError) as e:
            self.on_api_error("watch")
            raise _unavailable(e)(f"{what}: API server {self.server}: {e}") from e
        finally:
            w.stop()

    # ---------------------------------------------------------------------------------------- probe pods
    def namespace_uid(self, name: str) -> str:
        ns = self._call(f"read namespace {name}", self._core.read_namespace, name)
        return ns.metadata.uid

    def create_pod(self, manifest: dict, time_left: Callable[[], float] | None = None) -> ProbePodState:
        """Creates a pod from a plain manifest. A 409 is returned as ClusterConflictError: with explicit,
        run-unique names it means a retried create had already succeeded, which the caller may accept.
        `time_left`: seconds to the caller's deadline (no retry is waited for past it)."""
        ns = manifest["metadata"]["namespace"]
        name = manifest["metadata"]["name"]
        if (manifest["metadata"].get("labels") or {}).get(PROBE_LABEL) == "true":
            self._probe_pods.add((ns, name))  # before the call: a create cut by a timeout may still have worked
        try:
            resp = self._call(f"create pod {ns}/{name}", self._core.create_namespaced_pod, ns, manifest,
                              _preload_content=False, _time_left=time_left)
        except (ClusterForbiddenError, ClusterRejectedError, ClusterNotFoundError, ClusterThrottledError):
            # The API server answered and made no pod (admission: a full ResourceQuota, PodSecurity, a missing
            # namespace; a 429 is answered before the request is carried out): it must not count as a live
            # probe pod for the rest of the process.
            self._probe_pods.discard((ns, name))
            raise
        return _probe_state(json.loads(resp.data))

    def delete_pod(self, namespace: str, name: str) -> bool:
        """Deletes at once (grace period 0: a probe pod has nothing to finish). False if it was gone."""
        try:
            self._call(f"delete pod {namespace}/{name}", self._core.delete_namespaced_pod, name, namespace,
                       grace_period_seconds=0, propagation_policy="Background", _preload_content=False)
        except ClusterNotFoundError:
            self._probe_pods.discard((namespace, name))
            return False
        self._probe_pods.discard((namespace, name))
        return True

    # ------------------------------------------------------------------------------------- PolicyReports
    def publish_policy_reports(self, namespaced: Sequence[dict], cluster_report: dict,
                               labels: Mapping[str, str]) -> int:
        """Creates or replaces each wgpolicyk8s.io/v1alpha2 PolicyReport and the ClusterPolicyReport (one object
        per name, updated in place) and deletes our PolicyReport of that name (found by `labels`) in namespaces
        that are no longer probed. Returns how many namespaces have one."""
        for obj in namespaced:
            self._put_report("policyreports", obj)
        self._put_report("clusterpolicyreports", cluster_report)
        name = cluster_report["metadata"]["name"]
        keep = {o["metadata"]["namespace"] for o in namespaced}
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        items = self._list("list policyreports", self._custom.list_cluster_custom_object, *POLICY_REPORT_API,
                           "policyreports", label_selector=selector)["items"]
        for item in items:
            meta = _obj(item.get("metadata"))
            ns = meta.get("namespace")
            if meta.get("name") == name and isinstance(ns, str) and ns not in keep:
                with contextlib.suppress(ClusterNotFoundError):
                    self._call(f"delete policyreport {ns}/{name}", self._custom.delete_namespaced_custom_object,
                               *POLICY_REPORT_API, ns, "policyreports", name, _preload_content=False)
        return len(namespaced)

    def _put_report(self, plural: str, obj: dict) -> None:
        meta = obj["metadata"]
        ns, name = meta.get("namespace"), meta["name"]
        what = f"{plural} {ns}/{name}" if ns else f"{plural} {name}"
        where = (ns, plural) if ns else (plural,)
        suffix = "namespaced" if ns else "cluster"
        get = getattr(self._custom, f"get_{suffix}_custom_object")
        try:
            current = self._call(f"read {what}", get, *POLICY_REPORT_API, *where, name)
        except ClusterNotFoundError:
            create = getattr(self._custom, f"create_{suffix}_custom_object")
            try:
                self._call(f"create {what}", create, *POLICY_REPORT_API, *where, obj, _preload_content=False)
            except ClusterNotFoundError as e:
                raise ClusterNotFoundError(f"{e} (is the {'/'.join(POLICY_REPORT_API)} PolicyReport CRD "
                                           "installed?)") from e
            return
        version = _obj(_obj(current).get("metadata")).get("resourceVersion")
        body = {**obj, "metadata": {**meta, "resourceVersion": version}}
        replace = getattr(self._custom, f"replace_{suffix}_custom_object")
        self._call(f"replace {what}", replace, *POLICY_REPORT_API, *where, name, body, _preload_content=False)

    def probe_pods_alive(self) -> int:
        """Probe pods this adapter created and has not deleted yet."""
        return len(self._probe_pods)

    def ping(self) -> str:
        """The API server's version (readiness: is the API reachable with our credentials)."""
        # No retries: a readiness probe wants the answer now, and the kubelet asks again anyway.
        try:
            info = client.VersionApi(self._api).get_code(
                _request_timeout=min(5.0, self._settings.request_timeout_seconds))
        except ApiException as e:
            raise _api_error("get version", e) from e
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise _unavailable(e)(f"get version: API server {self.server} unreachable: {e}") from e
        return info.git_version

    def list_probe_pods(self, label_selector: str) -> tuple[tuple[ProbePodState, ...], str]:
        """The pods matching the selector in every namespace, and the list's resourceVersion to watch from."""
        what = f"list pods {label_selector}"
        resp = self._list(what, self._core.list_pod_for_all_namespaces, label_selector=label_selector)
        version = _text(resp.get("metadata", {}).get("resourceVersion"))
        if not version:
            raise ClusterRejectedError(f"{what}: the API server answered a list without a resourceVersion")
        return tuple(_probe_state(p) for p in resp["items"]), version

    def watch_probe_pods(self, label_selector: str, resource_version: str,
                         timeout_seconds: float) -> Iterator[tuple[ProbePodState | None, str | None]]:
        """(pod state or None for a bookmark, resourceVersion to resume from) for at most timeout_seconds."""
        for event_type, obj in self._stream(f"watch pods {label_selector}", self._core.list_pod_for_all_namespaces,
                                            timeout_seconds=timeout_seconds, resource_version=resource_version,
                                            label_selector=label_selector):
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            if event_type == "BOOKMARK":
                yield None, rv
                continue
            state = _probe_state(obj)
            if event_type == "DELETED":
                state = replace(state, phase="Deleted", deleting=True)
            yield state, rv

    # ----------------------------------------------------------------------------------------- run leases
    def create_run_lease(self, namespace: str, run: str, holder: str, duration_seconds: int,
                         now: datetime) -> None:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": run_lease_name(run), "namespace": namespace,
                             "labels": {RUN_LEASE_LABEL: "true", RUN_LABEL: run}},
                "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration_seconds,
                         "acquireTime": _micro_time(now), "renewTime": _micro_time(now)}}
        self._call(f"create lease {namespace}/{run_lease_name(run)}", self._coordination.create_namespaced_lease,
                   namespace, body, _preload_content=False)

    def renew_run_lease(self, namespace: str, run: str, now: datetime) -> None:
        name = run_lease_name(run)
        self._call(f"renew lease {namespace}/{name}", self._coordination.patch_namespaced_lease, name, namespace,
                   {"spec": {"renewTime": _micro_time(now)}}, _preload_content=False)

    def delete_run_lease(self, namespace: str, run: str) -> bool:
        name = run_lease_name(run)
        try:
            self._call(f"delete lease {namespace}/{name}", self._coordination.delete_namespaced_lease, name,
                       namespace, _preload_content=False)
        except ClusterNotFoundError:
            return False
        return True

    def list_run_leases(self, namespace: str) -> tuple[RunLease, ...]:
        resp = self._list(f"list leases {namespace}", self._coordination.list_namespaced_lease, namespace,
                          label_selector=f"{RUN_LEASE_LABEL}=true")
        out = []
        for item in resp["items"]:
            meta, spec = item.get("metadata") or {}, item.get("spec") or {}
            run = (meta.get("labels") or {}).get(RUN_LABEL)
            if not run:
                continue
            stamp = spec.get("renewTime") or spec.get("acquireTime")
            try:
                renewed = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
            except ValueError:
                renewed = None  # unreadable: treated as expired, like no lease at all
            duration = spec.get("leaseDurationSeconds")
            out.append(RunLease(run, str(spec.get("holderIdentity") or ""), renewed,
                                duration if isinstance(duration, int) else 0))
        return tuple(out)


    # -------------------------------------------------------------------------------------------- leases
    def read_lease(self, namespace: str, name: str) -> LeaseRecord | None:
        """The Lease as a LeaseRecord, None when it does not exist."""
        try:
            resp = self._call(f"get lease {namespace}/{name}", self._coordination.read_namespaced_lease, name,
                              namespace, _attempts=1, _preload_content=False)
        except ClusterNotFoundError:
            return None
        return _lease_record(json.loads(resp.data))

    def write_lease(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        """Creates the Lease (record.resource_version None) or replaces it only if nobody changed it since
        record.resource_version was read: ClusterConflictError when another replica got there first."""
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"holderIdentity": record.holder or None, "leaseDurationSeconds": record.lease_seconds,
                         "acquireTime": _unix_micro_time(record.acquired_at),
                         "renewTime": _unix_micro_time(record.renewed_at),
                         "leaseTransitions": record.transitions}}
        # One attempt each: a retried create or update would turn our own success into a conflict, and the
        # election loop tries again every retry period anyway.
        if record.resource_version is None:
            resp = self._call(f"create lease {namespace}/{name}", self._coordination.create_namespaced_lease,
                              namespace, body, _attempts=1, _preload_content=False)
        else:
            body["metadata"]["resourceVersion"] = record.resource_version
            resp = self._call(f"update lease {namespace}/{name}", self._coordination.replace_namespaced_lease,
                              name, namespace, body, _attempts=1, _preload_content=False)
        return _lease_record(json.loads(resp.data))


def run_lease_name(run: str) -> str:
    return f"netpol-drift-run-{run}"


def _micro_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The part of a coordination.k8s.io/v1 Lease that leader election reads and writes."""

    holder: str  # "" when released
    lease_seconds: int
    acquired_at: float | None  # unix seconds
    renewed_at: float | None
    transitions: int = 0
    resource_version: str | None = None  # None: not created yet


class LeaderElector:
    """Leader election on a Lease, client-go's algorithm, in a thread of its own.

    Not the client's LeaseLock/LeaderElector: those use the global default client (not this adapter's
    credentials and timeouts), block the caller, cannot release the lease and call sys.exit on bad settings.
    Here: every `retry_seconds` the leader renews and the others try to acquire; another holder's lease counts
    as expired `lease_seconds` after this replica last SAW it change (its own clock only, so clock skew between
    nodes cannot elect two leaders); a leader that could not renew for `renew_deadline_seconds` (shorter than
    the lease) steps down, and one that sees another holder steps down at once. `stop()` releases the Lease
    (empty holder) so a successor takes over without waiting for it to expire.
    """

    def __init__(self, adapter: ClusterAdapter, namespace: str, name: str, identity: str, *,
                 lease_seconds: float, renew_deadline_seconds: float, retry_seconds: float,
                 on_change: Callable[[bool], None], clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.adapter, self.namespace, self.name, self.identity = adapter, namespace, name, identity
        self.lease_seconds, self.renew_deadline, self.retry = lease_seconds, renew_deadline_seconds, retry_seconds
        self.on_change, self.clock, self.wall = on_change, clock, wall
        self.leading = False
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0
        self._renewed_at = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lease", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stops trying, steps down and releases the Lease if this replica holds it."""
        self._stop.set()
        self._thread.join(timeout=self.retry + self.adapter._settings.request_timeout_seconds)
        if self.leading:
            self._set_leading(False)
            self.release()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                held = self.try_acquire_or_renew()
            except ClusterError as e:
                log.warning("leader election: %s", e)
                held = False
            now = self.clock()
            if held:
                self._renewed_at = now
                if not self.leading:
                    self._set_leading(True)
            elif self.leading and (self._lost_to_another() or now - self._renewed_at >= self.renew_deadline):
                self._set_leading(False)
            self._stop.wait(self.retry)

    def _set_leading(self, leading: bool) -> None:
        self.leading = leading
        log.info("%s the leader (Lease %s/%s, identity %s)", "became" if leading else "stopped being",
                 self.namespace, self.name, self.identity)
        self.on_change(leading)

    def _lost_to_another(self) -> bool:
        o = self._observed
        return o is not None and bool(o.holder) and o.holder != self.identity

    def try_acquire_or_renew(self) -> bool:
        now_wall, now = self.wall(), self.clock()
        current = self.adapter.read_lease(self.namespace, self.name)
        mine = LeaseRecord(self.identity, round(self.lease_seconds), now_wall, now_wall)
        if current is None:
            try:
                self._observe(self.adapter.write_lease(self.namespace, self.name, mine), now)
            except ClusterConflictError:
                return False
            return True
        if self._observed is None or (current.holder, current.renewed_at) != (self._observed.holder,
                                                                             self._observed.renewed_at):
            self._observe(current, now)
        other = current.holder and current.holder != self.identity
        if other and self._observed_at + current.lease_seconds > now:
            return False  # held by another replica whose lease has not run out (as seen from here)
        record = replace(mine, resource_version=current.resource_version,
                         acquired_at=current.acquired_at if not other and current.holder else now_wall,
                         transitions=current.transitions + (1 if current.holder != self.identity else 0))
        try:
            self._observe(self.adapter.write_lease(self.namespace, self.name, record), now)
        except ClusterConflictError:
            return False
        return True

    def _observe(self, record: LeaseRecord, now: float) -> None:
        self._observed, self._observed_at = record, now

    def release(self) -> None:
        """Empty holder and a 1-second lease: the next replica to look takes over (client-go's release)."""
        try:
            current = self.adapter.read_lease(self.namespace, self.name)
            if current is None or current.holder != self.identity:
                return
            now_wall = self.wall()
            self.adapter.write_lease(self.namespace, self.name, replace(
                current, holder="", lease_seconds=1, renewed_at=now_wall))
            log.info("released Lease %s/%s", self.namespace, self.name)
        except ClusterError as e:  # it then simply expires
            log.warning("could not release Lease %s/%s: %s", self.namespace, self.name, e)


# --------------------------------------------------------------------------------------------------- helpers
def _verb(what: str) -> str:
    """The verb of a call's description ("list pods" -> list), for the api_errors metric's few label values."""
    verb = what.split(" ", 1)[0]
    return {"read": "get", "replace": "update"}.get(verb, verb)


def _retry_after(e: ApiException) -> float | None:
    """The Retry-After of an error answer, in seconds (None when absent or not a number of seconds)."""
    value = (e.headers or {}).get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _fingerprint(kind: str, obj: dict) -> str:
    """What a snapshot reads of the object, digested (see ClusterEvent.fingerprint)."""
    meta, status = obj.get("metadata") or {}, obj.get("status") or {}
    if kind == "Pod":
        ips = [a.get("ip") for a in status.get("podIPs") or []] or [status.get("podIP")]
        ports = [(c.get("name"), p.get("name"), p.get("containerPort"), p.get("protocol"))
                 for c in (obj.get("spec") or {}).get("containers") or [] for p in c.get("ports") or []]
        seen = [meta.get("labels") or {}, ips, status.get("phase") == "Running", bool(meta.get("deletionTimestamp")),
                ports]
    elif kind in ("Namespace", "Service"):
        seen = [meta.get("labels") or {}, obj.get("spec") if kind == "Service" else None]
    else:
        seen = [obj.get("spec") or {}]
    return hashlib.sha256(json.dumps(seen, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _unix_micro_time(unix: float | None) -> str | None:
    return None if unix is None else _micro_time(datetime.fromtimestamp(unix, UTC))


def _parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _lease_record(lease: dict) -> LeaseRecord:
    spec, meta = lease.get("spec") or {}, lease.get("metadata") or {}
    return LeaseRecord(spec.get("holderIdentity") or "", int(spec.get("leaseDurationSeconds") or 0),
                       _parse_time(spec.get("acquireTime")), _parse_time(spec.get("renewTime")),
                       int(spec.get("leaseTransitions") or 0), meta.get("resourceVersion"))


def _unavailable(e: Exception) -> type[ClusterUnavailableError]:
    """A connection-level failure: no answer at all (refused, reset, no route), unless only the answer was late
    (a read timeout: the server is there, slow)."""
    reason = e.reason if isinstance(e, urllib3.exceptions.MaxRetryError) else e
    if isinstance(reason, (urllib3.exceptions.ReadTimeoutError, TimeoutError)):
        return ClusterUnavailableError
    return ClusterUnreachableError


def _api_error(what: str, e: ApiException) -> ClusterError:
    detail = (e.reason or "").strip()
    body = e.body if isinstance(e.body, str) else ""
    if body:
        with contextlib.suppress(ValueError, AttributeError):
            detail = json.loads(body).get("message") or detail
    message = f"{what}: HTTP {e.status}: {detail}"
    if e.status in (401, 403):
        return ClusterForbiddenError(message)
    if e.status == 404:
        return ClusterNotFoundError(message)
    if e.status in (409, 410):  # 410: a watch's resource version expired; the caller re-lists
        return ClusterConflictError(message)
    if e.status == 429:
        return ClusterThrottledError(message)
    if e.status in _TRANSIENT_STATUS or e.status == 0:
        return ClusterUnavailableError(message)
    return ClusterRejectedError(message)


def _probe_state(pod: dict) -> ProbePodState:
    """A probe pod's state, read leniently (a field of the wrong type counts as absent): a pod we cannot read
    ends as `skipped` through the runner's checks, never as an exception in the middle of a run."""
    meta, spec, status = _obj(pod.get("metadata")), _obj(pod.get("spec")), _obj(pod.get("status"))
    unschedulable = waiting = message = reason = None
    exit_code = None
    for cond in map(_obj, _items(status.get("conditions"))):
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            # The scheduler's own words ("0/3 nodes are available: 3 node(s) were unschedulable. ..."); a reason
            # other than Unschedulable (SchedulingGated, SchedulerError) says more than its message alone.
            why, message = _text(cond.get("reason")), _text(cond.get("message"))
            unschedulable = ": ".join(x for x in (why if why != "Unschedulable" else None, message) if x) \
                or why or "not scheduled"
    for cs in map(_obj, _items(status.get("containerStatuses"))):
        state = _obj(cs.get("state"))
        if state.get("terminated"):
            t = _obj(state["terminated"])
            exit_code = t.get("exitCode") if _number(t.get("exitCode"), lowest=-(2**31)) else None
            message, reason = _text(t.get("message")), _text(t.get("reason"))
        elif state.get("waiting"):
            waiting = _text(_obj(state["waiting"]).get("reason"))
    return ProbePodState(
        namespace=_text(meta.get("namespace")) or "", name=_text(meta.get("name")) or "",
        phase=_text(status.get("phase")) or "Pending", node=_text(spec.get("nodeName")), unschedulable=unschedulable,
        waiting_reason=waiting, exit_code=exit_code, termination_message=message, termination_reason=reason,
        deleting=bool(meta.get("deletionTimestamp")),
        labels=tuple(sorted((k, v) for k, v in _obj(meta.get("labels")).items() if isinstance(v, str))))


def _obj(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _items(value: Any) -> list:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: Any, lowest: int = 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= lowest


def _bare_metadata(meta: Any) -> Any:
    """Only what identifies an object: the strict parsers need not know the server's bookkeeping fields (a
    metadata that is not a mapping goes to the parser as it is, which says so)."""
    if not isinstance(meta, dict):
        return meta
    return {k: meta[k] for k in ("name", "namespace", "labels") if k in meta}


def _stable_workload(pod: Pod) -> Pod:
    """A Deployment's pods are owned by a ReplicaSet named <deployment>-<pod-template-hash>; name the
    Deployment instead, so the source identity survives a rollout."""
    workload = owning_workload(pod)
    return replace(pod, workload=workload) if workload != pod.workload else pod
