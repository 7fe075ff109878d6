"""Bad input never crashes: every parser of outside input, fed type-confused and truncated shapes (tests/fuzz.py),
returns or raises our one-line error, and through the CLI that is exit 2 with one line on stderr.

Parsers: manifests (every kind, files and objects), the suite, settings (file and environment), export/import
bundles, API objects as the live snapshot and the probe runner read them (through a local stand-in API server
and the real adapter), and probe termination messages / target lists. The three shapes a review found first
(Service `ports: [80]`, `ownerReferences` as a mapping, `metadata.namespace: 5`) are pinned with their messages.
"""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import ClassVar

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from monitor.cli import main
from monitor.cluster import ClusterAdapter
from monitor.errors import InputError
from monitor.manifests import iter_documents, parse_object
from monitor.probe.wire import (
    ProbeTarget,
    TargetOutcome,
    WireError,
    decode_result,
    decode_targets,
    encode_result,
    encode_targets,
)
from monitor.settings import ClusterSettings, load_settings
from monitor.suite import parse_suite
from tests.fuzz import confused, fuzz_settings, only_our_error, truncated, well_typed
from tests.standins import JsonHandler, StandInServer, kubeconfig

SRC = "m.yaml"

# ------------------------------------------------------------------------------------------------- seeds
META = {"name": "web", "namespace": "shop", "labels": {"app": "web"}}
CONTAINERS = [{"name": "c", "image": "x", "ports": [{"containerPort": 80, "name": "http", "protocol": "TCP"}]}]
SELECTOR = {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]}
MANIFESTS = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"team": "a"}}},
    {"apiVersion": "v1", "kind": "Pod", "metadata": {**META, "ownerReferences": [
        {"kind": "ReplicaSet", "name": "web-5d8f", "controller": True}]},
     "spec": {"nodeName": "n1", "hostNetwork": False, "containers": CONTAINERS},
     "status": {"phase": "Running", "podIP": "10.0.0.5", "podIPs": [{"ip": "10.0.0.5"}]}},
    {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": META,
     "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
              "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": CONTAINERS}}}},
    {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": META,
     "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {
         "metadata": {"labels": {"app": "job"}}, "spec": {"containers": CONTAINERS}}}}}},
    {"apiVersion": "v1", "kind": "Service", "metadata": META,
     "spec": {"selector": {"app": "web"}, "clusterIP": "10.96.0.10",
              "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"},
                        {"port": 8080, "targetPort": 8080}]}},
    {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": META,
     "spec": {"podSelector": SELECTOR, "policyTypes": ["Ingress", "Egress"],
              "ingress": [{"from": [{"podSelector": SELECTOR, "namespaceSelector": {}},
                                    {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}}],
                           "ports": [{"port": 80, "endPort": 90}, {"port": "http", "protocol": "TCP"}]}],
              "egress": [{"to": [{"namespaceSelector": SELECTOR}], "ports": [{"protocol": "UDP", "port": 53}]}]}},
    {"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy", "metadata": {"name": "a"},
     "spec": {"priority": 5, "subject": {"pods": {"namespaceSelector": {}, "podSelector": SELECTOR}},
              "ingress": [{"name": "r", "action": "Deny", "from": [{"namespaces": SELECTOR}],
                           "ports": [{"portNumber": {"protocol": "TCP", "port": 80}},
                                     {"portRange": {"protocol": "UDP", "start": 1, "end": 9}},
                                     {"namedPort": "http"}]}],
              "egress": [{"action": "Pass", "to": [{"networks": ["10.0.0.0/8"]}, {"pods": {
                  "namespaceSelector": {}, "podSelector": {}}}]}]}},
    {"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "BaselineAdminNetworkPolicy",
     "metadata": {"name": "default"},
     "spec": {"subject": {"namespaces": {}}, "ingress": [{"action": "Allow", "from": [{"namespaces": {}}]}]}},
    {"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy", "metadata": {"name": "c"},
     "spec": {"tier": "Admin", "priority": 3, "subject": {"namespaces": SELECTOR},
              "egress": [{"action": "Accept", "to": [{"namespaces": {}}],
                          "protocols": [{"tcp": {"destinationPort": {"range": {"start": 80, "end": 90}}}},
                                        {"udp": {"destinationPort": {"number": 53}}},
                                        {"destinationNamedPort": "http"}]}]}},
]


# ------------------------------------------------------------------------------- the three named shapes
def _one_line(tmp_path: Path, capsys, obj: dict) -> tuple[int, str]:
    (tmp_path / SRC).write_text(yaml.safe_dump(obj))
    code = main(["matrix", "--manifests", str(tmp_path)])
    return code, capsys.readouterr().err


def test_service_ports_as_plain_numbers_is_one_line(tmp_path, capsys):
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
           "spec": {"selector": {"app": "web"}, "ports": [80]}}
    assert _one_line(tmp_path, capsys, svc) == (
        2, f"netpol-drift: error: {tmp_path / SRC}: Service shop/web: spec.ports[0]: must be a mapping, got int\n")


def test_owner_references_as_a_mapping_is_one_line(tmp_path, capsys):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "shop", "ownerReferences": {
        "kind": "ReplicaSet", "name": "web-1"}}, "spec": {"containers": []}}
    assert _one_line(tmp_path, capsys, pod) == (
        2, f"netpol-drift: error: {tmp_path / SRC}: Pod shop/web: metadata.ownerReferences: must be a list, "
           "got dict\n")


def test_namespace_as_a_number_is_one_line(tmp_path, capsys):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": 5}, "spec": {}}
    assert _one_line(tmp_path, capsys, pod) == (
        2, f"netpol-drift: error: {tmp_path / SRC}: Pod 5/web: metadata.namespace: must be a string, got int\n")


# ----------------------------------------------------------------------------------------------- manifests
@fuzz_settings
@given(confused(MANIFESTS))
def test_manifest_objects_never_crash(obj):
    parsed = only_our_error(lambda: parse_object(obj, SRC) if isinstance(obj, dict) else list(_flatten_one(obj)))
    if isinstance(obj, dict) and not isinstance(parsed, Exception):
        well_typed(parsed)


def _flatten_one(obj):
    from monitor.manifests import _flatten

    return _flatten(obj, SRC)


@fuzz_settings
@given(truncated([yaml.safe_dump_all(MANIFESTS, sort_keys=False), json.dumps(MANIFESTS[5], indent=1)]),
       st.sampled_from([".yaml", ".json"]))
def test_truncated_manifest_files_never_crash(text, suffix):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"m{suffix}"
        path.write_text(text)
        only_our_error(lambda: [parse_object(o, str(path)) for o in iter_documents(path)])


@fuzz_settings
@given(confused([{"kind": "List", "items": MANIFESTS}]))
def test_matrix_command_on_broken_manifests_exits_0_or_2_with_one_line(obj, ):
    with tempfile.TemporaryDirectory() as d:
        Path(d, SRC).write_text(yaml.safe_dump(obj))
        _exit_0_or_2(["matrix", "--manifests", d, "--format", "json"])


def _exit_0_or_2(argv: list[str]) -> None:
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    assert code in (0, 1, 2)
    if code == 2:
        lines = err.getvalue().splitlines()
        assert len(lines) == 1 and lines[0].startswith("netpol-drift: error: "), err.getvalue()


# ---------------------------------------------------------------------------------------------------- suite
SUITE = {"name": "s", "defaults": {"protocol": "TCP"}, "cases": [
    {"name": "a", "from": {"namespace": "shop", "workload": "web"}, "to": {"namespace": "shop", "pod": "db"},
     "port": 80, "protocol": "TCP", "expect": "allow", "description": "d"},
    {"name": "b", "from": {"namespaceSelector": SELECTOR, "podSelector": SELECTOR},
     "to": {"service": "shop/api"}, "ports": [80, "http"], "expect": "deny"},
    {"name": "c", "from": {"namespace": "shop", "labels": {"app": "web"}}, "to": {"cidr": "10.0.0.0/8"},
     "ports": [53], "protocol": "UDP", "expect": "deny"},
    {"name": "d", "from": {"namespace": "shop"}, "to": {"host": "192.0.2.1"}, "port": "443", "expect": "allow"}]}


@fuzz_settings
@given(confused([SUITE, *[{"cases": [c]} for c in SUITE["cases"]]]))
def test_suites_never_crash(data):
    suite = only_our_error(parse_suite, data, "suite.yaml")
    if not isinstance(suite, Exception):
        well_typed(list(suite.cases))


SHOP = Path(__file__).resolve().parents[1] / "config" / "examples" / "shop"
SHOP_SUITE = yaml.safe_load((SHOP / "suite.yaml").read_text())

# One case per seed: the breakage lands in that case's few fields, not anywhere in a long suite.
ONE_CASE_SUITES = [{**SHOP_SUITE, "cases": [c]} for c in SHOP_SUITE["cases"] + SUITE["cases"]]


@fuzz_settings
@given(confused(ONE_CASE_SUITES) | truncated([(SHOP / "suite.yaml").read_text()]))
def test_check_command_on_broken_suites_exits_0_1_or_2_with_one_line(suite):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d, "suite.yaml")
        path.write_text(suite if isinstance(suite, str) else yaml.safe_dump(suite))
        _exit_0_or_2(["check", "--manifests", str(SHOP), "--suite", str(path), "--format", "json"])


# ------------------------------------------------------------------------------------------- termination
GOOD_RESULTS = [encode_result([TargetOutcome("connected", 3.0), TargetOutcome("timeout"),
                               TargetOutcome("error", None, "EPERM"), TargetOutcome("refused", 1.0)]),
                "P1 40 R c38t2 E 3=ENETUNREACH;7=x"]


@fuzz_settings
@given(truncated(GOOD_RESULTS) | st.text(max_size=40) | st.from_regex(r"P1 [0-9²]{1,3} [LR ]{1,2} [crtue0-9²]{0,9}"
                                                                   r"( E [0-9²]=[a-z]*;?)?", fullmatch=True))
def test_termination_messages_never_crash(text):
    # The runner turns WireError into `skipped` for the pod's targets; anything else would end the run.
    result = only_our_error(decode_result, text, allowed=(WireError,))
    if not isinstance(result, Exception):
        count, outcomes = result
        assert len(outcomes) <= count


@fuzz_settings
@given(truncated([encode_targets([ProbeTarget("10.0.0.1", 80), ProbeTarget("fd00::1", 53, "UDP")])])
       | st.text(max_size=30))
def test_probe_target_lists_never_crash(text):
    only_our_error(decode_targets, text, allowed=(WireError,))


def test_unicode_digits_are_not_numbers_on_the_wire():
    with pytest.raises(WireError):
        decode_result("P1 ² L c")
    with pytest.raises(WireError):
        decode_targets("T10.0.0.1:8²")
    assert decode_result("P1 1 L c3 E ²=x") == (1, [TargetOutcome("connected", 3.0)])


# ----------------------------------------------------------------------------------------------- settings
CONFIG = {"cluster": {"name": "prod", "kubeconfig": "/k", "context": "c", "request_timeout_seconds": 5,
                      "retries": 2},
          "suite": "/s.yaml", "log_level": "INFO",
          "probe": {"image": "i", "namespace": "n", "timeout_seconds": 1.5, "concurrency": 3,
                    "run_deadline_seconds": 60, "per_node": True, "refused_means": "deny"},
          "store": {"url": "sqlite:///x.db", "retention_days": 9}, "drift": {"confirmations": 2,
                                                                             "auto_known_good": False},
          "schedule": {"interval_seconds": 60, "debounce_seconds": 2.5}, "slack": {"channel": "#c"},
          "web": {"listen": "0.0.0.0:1"}}


@fuzz_settings
@given(confused([CONFIG]) | truncated([yaml.safe_dump(CONFIG)]))
def test_config_files_never_crash(config):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.yaml"
        path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
        only_our_error(load_settings, path, {})


@fuzz_settings
@given(st.dictionaries(st.sampled_from(["NETPOL_DRIFT_STORE_URL", "NETPOL_DRIFT_PROBE_CONCURRENCY",
                                        "NETPOL_DRIFT_PROBE_PER_NODE", "NETPOL_DRIFT_LOG_LEVEL",
                                        "NETPOL_DRIFT_SCHEDULE_DEBOUNCE_SECONDS", "NETPOL_DRIFT_PROBE_"])
                       | st.from_regex(r"NETPOL_DRIFT_[A-Z_]{0,14}", fullmatch=True),
                       st.text(max_size=8), max_size=3))
def test_environment_never_crashes(env):
    only_our_error(load_settings, None, env)


def test_input_error_names_file_object_and_field():
    e = InputError("must be a string, got int", file="f", obj="Pod a/b", field="metadata.namespace")
    assert str(e) == "f: Pod a/b: metadata.namespace: must be a string, got int"


# ---------------------------------------------------------------------------------- API objects (live mode)
class _ListStandIn(JsonHandler):
    """A stand-in API server that answers a GET with the body the test set last; a path outside the served one
    (the admin-policy APIs other than AdminNetworkPolicy) is 404, an API the cluster does not serve."""

    body: ClassVar[list] = []

    def do_GET(self) -> None:
        served, body = self.body[0]
        if served not in self.path:
            self.send_json(404, {"kind": "Status", "code": 404, "message": "not served"})
        else:
            self.send_json(200, body)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """(adapter, set_body): the real ClusterAdapter against the stand-in, no retries."""
    body = [("", b"{}")]
    server = StandInServer(_ListStandIn, body=body)
    config = kubeconfig(tmp_path_factory.mktemp("kube"), server.url, token="x")
    adapter = ClusterAdapter.connect(ClusterSettings(retries=0, request_timeout_seconds=5), kubeconfig=str(config))

    def set_body(data, served: str = "") -> None:
        body[0] = (served, json.dumps(data).encode() if not isinstance(data, bytes) else data)

    yield adapter, set_body
    adapter.close()
    server.stop()


def _api_list(kind: str, *items: dict) -> dict:
    return {"kind": f"{kind}List", "apiVersion": "v1", "metadata": {"resourceVersion": "7"}, "items": list(items)}


def _api_item(manifest: dict) -> dict:
    # What a list answer holds: no kind/apiVersion per item, server bookkeeping in metadata.
    item = {k: v for k, v in copy.deepcopy(manifest).items() if k not in ("kind", "apiVersion")}
    item["metadata"] = {**item.get("metadata", {}), "uid": "u1", "resourceVersion": "5",
                        "managedFields": [{"manager": "kubectl"}]}
    return item


PROBE_POD = {"metadata": {"name": "probe-1", "namespace": "shop", "labels": {"netpol-drift.io/probe": "true"}},
             "spec": {"nodeName": "n1"},
             "status": {"phase": "Failed", "conditions": [{"type": "PodScheduled", "status": "True"}],
                        "containerStatuses": [{"state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                                                        "message": GOOD_RESULTS[0]}}}]}}
SLICE = {"metadata": {"name": "web-x", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
         "endpoints": [{"addresses": ["10.0.0.5"], "conditions": {"ready": True}}],
         "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
BY_KIND = {m["kind"]: m for m in MANIFESTS}
API_READS = {  # adapter method -> the list answers it reads
    "list_namespaces": _api_list("Namespace", _api_item(BY_KIND["Namespace"])),
    "list_pods": _api_list("Pod", _api_item(BY_KIND["Pod"])),
    "list_services": _api_list("Service", _api_item(BY_KIND["Service"])),
    "list_network_policies": _api_list("NetworkPolicy", _api_item(BY_KIND["NetworkPolicy"])),
    "list_admin_policies": _api_list("AdminNetworkPolicy", _api_item(BY_KIND["AdminNetworkPolicy"])),
    "list_endpoint_slices": _api_list("EndpointSlice", SLICE),
    "list_probe_pods": _api_list("Pod", PROBE_POD),
}


@pytest.mark.parametrize("method", sorted(API_READS))
def test_api_objects_never_crash_the_live_snapshot_or_the_probe_runner(api, method):
    adapter, set_body = api
    read = getattr(adapter, method)
    args = ("netpol-drift.io/probe",) if method == "list_probe_pods" else ()
    served = "/adminnetworkpolicies" if method == "list_admin_policies" else ""
    set_body(API_READS[method], served)
    good = read(*args)
    assert good and (good[0] if method == "list_probe_pods" else good), "the seed itself reads"

    @fuzz_settings
    @given(confused([API_READS[method]]) | truncated([json.dumps(API_READS[method])]).map(str.encode))
    def fuzz(answer):
        set_body(answer, served)
        got = only_our_error(read, *args)
        if not isinstance(got, Exception):
            well_typed(list(got[0]) if method == "list_probe_pods" else list(got))

    fuzz()


# ---------------------------------------------------------------------------------------- export bundles
def _bundle() -> dict:
    from monitor.models import FlowResult, Namespace, Outcome, Pod, Run, Snapshot, Verdict, labels_of, to_jsonable
    from monitor.snapshot import snapshot_digest
    from monitor.store import BUNDLE_FORMAT, BUNDLE_SCHEMA

    snap = Snapshot.build([Namespace("shop", labels_of({"team": "a"}))],
                          [Pod("shop", "web-1", labels_of({"app": "web"}), "10.0.0.1", workload="Deployment/web")],
                          [], [], [])
    result = FlowResult("c", "shop/web", "shop/db", 5432, "TCP", Verdict.DENY, Verdict.DENY, Outcome.TIMEOUT,
                        Verdict.DENY, None, 1, "denied", "", "n1")
    run = Run("prod", "2026-11-28T10:00:00Z", "2026-11-28T10:00:05Z", "schedule", snapshot_digest(snap),
              "sha256:suite", (result,), "ok", None, "1")
    entry = {**to_jsonable(run), "known_good": True, "accepted_by": None}
    return {"format": BUNDLE_FORMAT, "schema": BUNDLE_SCHEMA, "exported_at": "2026-11-28T11:00:00Z",
            "runs": [entry], "snapshots": {run.snapshot_digest: to_jsonable(snap)}}


BUNDLE = _bundle()


def test_the_bundle_seed_is_valid():
    from monitor.store import parse_bundle

    runs, snapshots = parse_bundle(copy.deepcopy(BUNDLE))
    assert len(runs) == 1 and len(snapshots) == 1


@fuzz_settings
@given(confused([BUNDLE]))
def test_bundles_never_crash(bundle):
    from monitor.store import parse_bundle

    parsed = only_our_error(parse_bundle, bundle)
    if not isinstance(parsed, Exception):
        runs, snapshots = parsed
        well_typed([run for run, _, _ in runs] + list(snapshots.values()))


@fuzz_settings
@given(confused([BUNDLE]).map(json.dumps) | truncated([json.dumps(BUNDLE)]))
def test_import_command_on_broken_bundles_exits_0_or_2_with_one_line(text):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d, "bundle.json")
        path.write_text(text)
        _exit_0_or_2(["import", str(path), "--db", f"sqlite:///{d}/absent.db"])


# ------------------------------------------------------------------------------------------------ kubeconfig
KUBECONFIG = {"apiVersion": "v1", "kind": "Config", "current-context": "t",
              "clusters": [{"name": "t", "cluster": {"server": "http://127.0.0.1:1",
                                                     "insecure-skip-tls-verify": True}}],
              "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t", "namespace": "shop"}}],
              "users": [{"name": "t", "user": {"token": "x"}}]}


@fuzz_settings
@given(confused([KUBECONFIG]) | truncated([yaml.safe_dump(KUBECONFIG)]))
def test_kubeconfigs_never_crash(config):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d, "kubeconfig")
        path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
        adapter = only_our_error(ClusterAdapter.connect, ClusterSettings(retries=0), str(path))
        if isinstance(adapter, ClusterAdapter):
            adapter.close()
