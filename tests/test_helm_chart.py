"""deploy/helm/netpol-drift with the real Helm (tests/lab/build.sh helm): lint and template for default and
full values, settings and suite that our own loaders accept, typos rejected by values.schema.json, the RBAC
shape per values, the alert rules and dashboard on the metrics monitor/metrics.py really exports, and the
plain manifests (deploy/manifests/, deploy/rbac.yaml, deploy/rbac-policyreports.yaml) equal to what the chart
renders.

What the API server thinks of the rendered objects, and the chart running for real, is tests/test_helm_lab.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from monitor.metrics import Metrics
from monitor.settings import load_settings
from monitor.suite import load_suite

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "deploy" / "helm" / "netpol-drift"
FULL = CHART / "ci" / "full-values.yaml"
HELM_VERSION = re.search(r"HELM_VERSION:-([0-9.]+)", (REPO / "tests/lab/build.sh").read_text()).group(1)
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "netpol-drift-lab"
HELM = CACHE / f"helm-{HELM_VERSION}" / "helm"
ALERTS = {"NetpolDriftOpen", "NetpolDriftRunsFailing", "NetpolDriftNoSuccessfulRun", "NetpolDriftAlertQueueStuck",
          "NetpolDriftNoLeader"}


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    if not HELM.is_file():
        pytest.fail(f"no Helm at {HELM}: run `make lab-build` (tests/lab/build.sh helm)")
    result = subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def render(*args: str, namespace: str = "netpol-drift", release: str = "netpol-drift") -> list[dict]:
    out = helm("template", release, str(CHART), "--namespace", namespace, *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


@pytest.mark.parametrize("values", [[], ["-f", str(FULL)]], ids=["default", "full"])
def test_helm_lint_strict(values):
    result = helm("lint", "--strict", str(CHART), *values)
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("values", [[], ["-f", str(FULL)]], ids=["default", "full"])
def test_rendered_settings_and_suite_load_with_our_loaders(tmp_path, values):
    docs = render(*values)
    configmaps = {d["metadata"]["name"]: d for d in by_kind(docs, "ConfigMap")}
    (tmp_path / "netpol-drift.yaml").write_text(configmaps["netpol-drift-config"]["data"]["netpol-drift.yaml"])
    settings = load_settings(tmp_path / "netpol-drift.yaml", env={})
    [deployment] = by_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    # The suite path in the settings is inside the suite volume's mount, under the key the ConfigMap has.
    suite_dir, _, key = settings.suite.rpartition("/")
    assert suite_dir == mounts["suite"]
    suite_cm = volumes["suite"]["configMap"]["name"]
    if suite_cm in configmaps:
        (tmp_path / key).write_text(configmaps[suite_cm]["data"][key])
        assert load_suite(tmp_path / key).cases
    else:
        assert values and suite_cm == "netpol-suite" and key == "baseline.yaml"  # the user's own ConfigMap
    assert container["args"][-1] == f"{mounts['config']}/netpol-drift.yaml"
    assert settings.probe.namespace == "netpol-drift" and settings.leader.enabled
    assert int(settings.web.listen.rpartition(":")[2]) == container["ports"][0]["containerPort"]
    # The kubelet's SIGKILL must not cut the run's grace plus the abort's cleanup.
    assert pod["terminationGracePeriodSeconds"] >= settings.schedule.shutdown_grace_seconds + 10
    # Restricted: what PodSecurity "restricted" and a read-only root ask for.
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] and psc["seccompProfile"]["type"] == "RuntimeDefault"
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"] and sc["capabilities"]["drop"] == ["ALL"]
    assert "/tmp" in mounts.values() and "/var/lib/netpol-drift" in mounts.values()
    if not values:
        assert settings.store.url == "sqlite:////var/lib/netpol-drift/netpol-drift.db"
        assert volumes["data"]["persistentVolumeClaim"]["claimName"] == by_kind(docs, "PersistentVolumeClaim")[0][
            "metadata"]["name"]
        assert deployment["spec"]["strategy"]["type"] == "Recreate"
        assert settings.probe.image == "ghcr.io/netpol-drift/netpol-drift:0.1.0" == container["image"]
    else:
        assert settings.store.url.startswith("postgresql+psycopg://") and deployment["spec"]["replicas"] == 2
        env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
        assert env["NETPOL_DRIFT_DATABASE_PASSWORD"] == {"name": "netpol-drift-db", "key": "password"}
        assert env["NETPOL_DRIFT_SLACK_TOKEN"]["name"] == "netpol-drift-slack"
        assert settings.slack.channel == "#netpol-alerts" and settings.cluster.name == "production"
        assert settings.leader.lease_name == "netpol-drift-production"


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "imagee.tag=1"], "additional properties 'imagee' not allowed"),
    (["--set", "database.sqlite.persistance.enabled=false"], "additional properties 'persistance' not allowed"),
    (["--set", "probe.refusedMeans=drop"], "at '/probe/refusedMeans': value must be one of 'allow', 'deny', 'unknown'"),
    (["--set", "serviceMonitor.enable=true"], "additional properties 'enable' not allowed"),
    (["--set", "probedNamespaces[0]=Shop"], "at '/probedNamespaces/0': 'Shop' does not match pattern"),
    (["--set", "database.url=postgresql://u:secret@db/x"], "at '/database/url'"),  # no password in values
    (["--set", "replicaCount=2"], "replicaCount > 1 needs PostgreSQL (database.url)"),
])
def test_bad_values_are_rejected_with_the_key_named(args, message):
    result = helm("template", "x", str(CHART), *args, check=False)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_a_suite_file_given_with_set_file_is_mounted_as_written(tmp_path):
    suite_file = REPO / "config" / "examples" / "shop" / "suite.yaml"
    [suite_cm] = [d for d in render("--set-file", f"suite.inline={suite_file}")
                  if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "netpol-drift"]
    assert suite_cm["data"]["suite.yaml"].strip() == suite_file.read_text().strip()
    (tmp_path / "suite.yaml").write_text(suite_cm["data"]["suite.yaml"])
    assert load_suite(tmp_path / "suite.yaml").name == "shop-baseline"


def rules(doc: dict) -> list[tuple[str, ...]]:
    return [(g, r, v) for rule in doc["rules"] for g in rule["apiGroups"] for r in rule["resources"]
            for v in rule["verbs"]]


def test_probe_pods_may_be_created_only_in_the_listed_namespaces():
    docs = render("--set", "probedNamespaces={shop,payments}")
    cluster_wide = [r for d in by_kind(docs, "ClusterRole") for r in rules(d)]
    assert ("", "pods", "create") not in cluster_wide and ("", "pods", "list") in cluster_wide
    roles = {d["metadata"]["namespace"]: rules(d) for d in by_kind(docs, "Role")
             if d["metadata"]["name"].endswith("-probe")}
    assert roles == {"shop": [("", "pods", "create"), ("", "pods", "delete")],
                     "payments": [("", "pods", "create"), ("", "pods", "delete")]}
    default = render()
    assert ("", "pods", "create") in [r for d in by_kind(default, "ClusterRole") for r in rules(d)]


def test_no_exec_logs_secrets_or_configmaps_anywhere():
    for values in ([], ["-f", str(FULL)]):
        docs = render(*values)
        granted = [r for d in by_kind(docs, "ClusterRole") + by_kind(docs, "Role") for r in rules(d)]
        resources = {r for _, r, _ in granted}
        assert not resources & {"pods/exec", "pods/log", "pods/attach", "pods/portforward", "secrets",
                                "configmaps", "*"}, resources
        assert not {v for *_, v in granted} & {"*", "escalate", "bind", "impersonate"}
        # Nothing it reads may be changed: write verbs only on its probe pods, Leases and PolicyReports.
        written = {r for _, r, v in granted if v not in {"get", "list", "watch"}}
        assert written <= {"pods", "leases", "policyreports", "clusterpolicyreports"}, written
        assert ("", "pods", "update") not in granted and ("", "pods", "patch") not in granted


def test_lease_rights_follow_leader_election():
    """Run Leases exist with or without leader election; get/update only on the leader Lease, by name."""
    for args, leader in (([], True), (["--set", "leaderElection.enabled=false"], False)):
        [role] = [d for d in by_kind(render(*args), "Role") if d["metadata"]["name"] == "netpol-drift-leases"]
        named = [r for r in role["rules"] if "resourceNames" in r]
        assert [(r["resourceNames"], r["verbs"]) for r in named] == ([(["netpol-drift"], ["get", "update"])]
                                                                      if leader else [])
        assert {v for r in role["rules"] if "resourceNames" not in r for v in r["verbs"]} == {
            "create", "list", "patch", "delete"}


def test_policy_reports_are_an_option_with_their_own_rbac(tmp_path):
    assert not [d for d in render() if d["metadata"]["name"].endswith("-policyreports")]
    docs = render("--set", "policyReports.enabled=true", "--set", "policyReports.name=drift")
    [role] = [d for d in by_kind(docs, "ClusterRole") if d["metadata"]["name"] == "netpol-drift-policyreports"]
    assert {r for _, r, _ in rules(role)} == {"policyreports", "clusterpolicyreports"}
    config = next(d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] == "netpol-drift-config")
    (tmp_path / "s.yaml").write_text(config["data"]["netpol-drift.yaml"])
    report = load_settings(tmp_path / "s.yaml", env={}).report
    assert report.policy_reports and report.name == "drift"


@pytest.mark.parametrize("template", ["rbac.yaml", "rbac-policyreports.yaml"])
def test_every_rbac_rule_has_a_comment(template):
    lines = (CHART / "templates" / template).read_text().splitlines()
    bare = [i + 1 for i, line in enumerate(lines) if line.strip().startswith("- apiGroups:")
            and not lines[i - 1].strip().startswith("#")]
    assert bare == []


def test_networkpolicy_egress_follows_what_is_configured():
    [np] = by_kind(render(), "NetworkPolicy")
    ports = [[p["port"] for p in rule["ports"]] for rule in np["spec"]["egress"]]
    assert ports == [[443, 6443], [53, 53]]  # the API server and DNS; no Slack, no database configured
    assert np["spec"]["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    [np] = by_kind(render("-f", str(FULL)), "NetworkPolicy")
    egress = np["spec"]["egress"]
    assert egress[0]["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]
    assert [[p["port"] for p in rule["ports"]] for rule in egress] == [[6443], [53, 53], [443], [5432]]
    assert egress[3]["to"] == [{"ipBlock": {"cidr": "10.20.0.0/24"}}]
    assert np["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "serve"



def test_slack_through_a_proxy_or_stand_in_gets_its_own_egress(tmp_path):
    """slack.baseUrl and networkPolicy.slack: the settings name the URL, the egress rule its address and port."""
    docs = render("--set", "slack.existingSecret=s", "--set", "slack.channel=#a",
                  "--set", "slack.baseUrl=http://10.9.8.7:3128/api/",
                  "--set", "networkPolicy.slack.cidrs={10.9.8.7/32}", "--set", "networkPolicy.slack.ports={3128}")
    [np] = by_kind(docs, "NetworkPolicy")
    assert {"ports": [{"port": 3128, "protocol": "TCP"}], "to": [{"ipBlock": {"cidr": "10.9.8.7/32"}}]} in np[
        "spec"]["egress"]
    config = next(d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] == "netpol-drift-config")
    (tmp_path / "s.yaml").write_text(config["data"]["netpol-drift.yaml"])
    assert load_settings(tmp_path / "s.yaml", env={}).slack.base_url == "http://10.9.8.7:3128/api/"


def exported_metrics() -> set[str]:
    """The series names PromQL sees for every metric family of monitor/metrics.py."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
    return {family.name + suffix for family in Metrics().registry.collect()
            for suffix in suffixes.get(family.type, [""])}


def test_alerts_and_dashboard_use_only_metrics_that_exist():
    docs = render("-f", str(FULL))
    [rule] = by_kind(docs, "PrometheusRule")
    alerts = {r["alert"]: r for r in rule["spec"]["groups"][0]["rules"]}
    assert set(alerts) == ALERTS
    dashboard_cm = next(d for d in by_kind(docs, "ConfigMap") if "grafana_dashboard" in d["metadata"]["labels"])
    assert dashboard_cm["metadata"]["namespace"] == "monitoring"
    dashboard = json.loads(dashboard_cm["data"]["netpol-drift.json"])
    exprs = [a["expr"] for a in alerts.values()] + [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {m for e in exprs for m in re.findall(r"\bnetpol_drift_[a-z_]+", e)}
    exported = exported_metrics()
    assert used <= exported, used - exported
    titles = {p["title"] for p in dashboard["panels"]}
    assert {"Drift open", "Cases by state", "Run duration", "Probe outcomes", "Alert queue"} <= titles
    # "No successful run in 3 intervals" follows the schedule it watches: 3 x 120 s in the full values.
    no_success = alerts["NetpolDriftNoSuccessfulRun"]
    assert "> 360" in no_success["expr"] and no_success["for"] == "360s"


def test_plain_manifests_are_what_the_chart_renders(tmp_path):
    """deploy/render.sh into a copy: the committed deploy/manifests/ and deploy/rbac.yaml must equal it."""
    copy = tmp_path / "repo"
    (copy / "deploy" / "manifests").mkdir(parents=True)
    subprocess.run(["cp", "-r", str(REPO / "deploy" / "helm"), str(REPO / "deploy" / "render.sh"),
                    str(copy / "deploy")], check=True)
    subprocess.run(["bash", str(copy / "deploy" / "render.sh"), str(HELM)], check=True, capture_output=True)
    for rel in ("deploy/manifests/netpol-drift.yaml", "deploy/rbac.yaml", "deploy/rbac-policyreports.yaml"):
        assert (copy / rel).read_text() == (REPO / rel).read_text(), f"{rel} is stale: run deploy/render.sh"
    rendered = [d for d in yaml.safe_load_all((REPO / "deploy/manifests/netpol-drift.yaml").read_text()) if d]
    rbac = [d for d in yaml.safe_load_all((REPO / "deploy/rbac.yaml").read_text()) if d]
    # deploy/rbac.yaml is the same identity and rules as the full manifests, nothing else.
    key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
    wanted = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
    assert sorted(map(key, rbac)) == sorted(key(d) for d in rendered if d["kind"] in wanted)
