"""The shared output formats on the example shop (issue 19): JUnit XML, pull-request markdown, the kubectl plugin.

JUnit files are validated against tests/data/junit.xsd (the strict common subset of the schemas CI readers use,
see its header) with xmlschema, then read back case by case.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema

from monitor.cli import main
from tests.test_history import db as history_db  # noqa: F401 (a fixture: two clusters' stored runs)

ROOT = Path(__file__).resolve().parents[1]
SHOP = ROOT / "config" / "examples" / "shop"
JUNIT_XSD = Path(__file__).resolve().parent / "data" / "junit.xsd"

# The shop suite's first case, one that the shop's policies contradict, and one no pod can run.
MIXED_SUITE = """
    name: shop-mixed
    cases:
      - name: frontend-to-api
        from: {namespace: shop, workload: frontend}
        to: {namespace: shop, workload: api}
        port: http
        expect: allow
      - name: frontend-to-db-allowed
        from: {namespace: shop, workload: frontend}
        to: {namespace: shop, workload: db}
        port: 5432
        expect: allow
      - name: ghost-to-db
        from: {namespace: shop, labels: {app: ghost}}
        to: {namespace: shop, workload: db}
        port: 5432
        expect: deny
    """


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def mixed_suite(tmp_path: Path) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(MIXED_SUITE))
    return path


def junit_cases(path: Path) -> dict[str, ET.Element]:
    xmlschema.XMLSchema(str(JUNIT_XSD)).validate(str(path))
    root = ET.parse(path).getroot()
    return {tc.get("name"): tc for tc in root.iter("testcase")}


# ------------------------------------------------------------------------------------------------- JUnit
def test_the_junit_schema_rejects_what_ci_readers_reject():
    """No vacuous validation: the schema fails a case without a name and a failure without a message."""
    schema = xmlschema.XMLSchema(str(JUNIT_XSD))
    good = ('<testsuites><testsuite name="s" tests="1" failures="1" errors="0" time="0" '
            'timestamp="2026-01-01T00:00:00" hostname="h"><testcase name="c" classname="s" time="0">'
            '<failure message="m" type="t">x</failure></testcase></testsuite></testsuites>')
    assert schema.is_valid(good)
    assert not schema.is_valid(good.replace(' name="c"', ""))
    assert not schema.is_valid(good.replace(' message="m"', ""))
    assert not schema.is_valid(good.replace('tests="1"', 'tests="one"'))
    assert not schema.is_valid(good.replace("</failure>", '</failure><skipped message="s"/>'))


def test_check_writes_junit_alongside_its_table_case_by_case(tmp_path, capsys, mixed_suite):
    junit = tmp_path / "out" / "junit.xml"
    junit.parent.mkdir()
    code, out, _ = run(capsys, "check", "--manifests", str(SHOP), "--suite", str(mixed_suite),
                       "--junit", str(junit))
    assert code == 1
    assert "shop-mixed: 1 passed, 1 failed, 1 skipped" in out  # the normal output is still there
    cases = junit_cases(junit)
    root = ET.parse(junit).getroot()
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["shop-mixed"]
    assert {k: suites[0].get(k) for k in ("tests", "failures", "errors", "skipped")} == \
        {"tests": "3", "failures": "1", "errors": "0", "skipped": "1"}
    assert list(cases) == ["frontend-to-api", "frontend-to-db-allowed", "ghost-to-db"]
    assert all(tc.get("classname") == "shop-mixed" for tc in cases.values())

    passed = cases["frontend-to-api"]
    assert passed.find("failure") is None and passed.find("skipped") is None

    failure = cases["frontend-to-db-allowed"].find("failure")
    assert failure.get("message").startswith("expected allow, policies say deny: denied TCP/5432")
    assert "shop/default-deny" in failure.get("message")  # the explanation names the isolating policy
    assert "shop/frontend -> shop/db 5432/TCP: expected allow, policies say deny" in failure.text

    skipped = cases["ghost-to-db"].find("skipped")
    assert skipped.get("message").startswith("not verified: no live pod matches source shop[app=ghost]")
    assert cases["ghost-to-db"].find("failure") is None


def test_check_junit_of_the_shop_baseline_passes_every_case(tmp_path, capsys):
    junit = tmp_path / "junit.xml"
    code, _, _ = run(capsys, "check", "--manifests", str(SHOP), "--suite", str(SHOP / "suite.yaml"),
                     "--format", "json", "--junit", str(junit))
    assert code == 0
    cases = junit_cases(junit)
    assert len(cases) == 8
    assert all(len(tc) <= 1 and tc.find("system-out") is not None for tc in cases.values())


def test_junit_escapes_markup_and_drops_characters_xml_cannot_carry():
    from monitor.models import FlowResult, Verdict
    from monitor.report import CaseReport
    from monitor.report.junit import junit_xml

    flow = FlowResult('a<b>&"c\x07', "ns/x", "ns/y", 80, "TCP", Verdict.ALLOW, Verdict.DENY,
                      explanation="no rule ]]> allows\x1b[31m")
    case = CaseReport('a<b>&"c\x07', "fail", "allow", "deny", "no rule ]]> allows\x1b[31m", (flow,), live=False)
    text = junit_xml("s<&>", [case], timestamp="2026-01-01T00:00:00+00:00", seconds=0.5, hostname="h",
                     properties={})
    assert xmlschema.XMLSchema(str(JUNIT_XSD)).is_valid(text)
    tc = ET.fromstring(text).find("testsuite/testcase")
    assert tc.get("name") == 'a<b>&"c\ufffd'
    assert "]]> allows\ufffd[31m" in tc.find("failure").text


def test_junit_to_an_unwritable_path_is_one_line_naming_the_file(tmp_path, capsys, mixed_suite):
    target = tmp_path / "missing-dir" / "junit.xml"
    code, _, err = run(capsys, "check", "--manifests", str(SHOP), "--suite", str(mixed_suite),
                       "--junit", str(target))
    assert code == 2
    assert err == f"netpol-drift: error: {target}: --junit: cannot write: No such file or directory\n"


# ---------------------------------------------------------------------------------------------- markdown
def table_rows(body: str) -> list[list[str]]:
    """The markdown table's header and rows as cells, split on unescaped pipes only (as GitHub renders them);
    the delimiter row must follow the header."""
    import re

    lines = [ln for ln in body.splitlines() if ln.startswith("|")]
    if not lines:
        return []
    assert set(lines[1]) == {"|", "-"}
    del lines[1]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", ln)[1:-1]] for ln in lines]


def test_check_markdown_has_a_summary_a_table_of_what_failed_and_folded_explanations(capsys, mixed_suite):
    code, out, _ = run(capsys, "check", "--manifests", str(SHOP), "--suite", str(mixed_suite),
                       "--format", "markdown")
    assert code == 1  # the exit code does not depend on the format
    assert out.splitlines()[0] == (f"❌ **netpol-drift** suite shop-mixed on manifests {SHOP}: 1 passed, 1 failed, "
                                   "1 not verified")
    header, *rows = table_rows(out)
    assert header == ["Result", "Case", "From", "To", "Port", "Expected", "Policies say"]
    assert rows == [["FAIL", "frontend-to-db-allowed", "shop/frontend", "shop/db", "5432/TCP", "allow", "deny"],
                    ["SKIPPED", "ghost-to-db", r"shop\[app=ghost\]", "shop/db", "TCP", "deny", "skipped"]]
    details = out[out.index("<details><summary>Explanations</summary>"):]
    assert details.rstrip().endswith("</details>")
    assert "- **frontend-to-db-allowed** (fail): denied TCP/5432: ingress: shop/db is isolated by NetworkPolicy" \
           in details
    assert "no live pod matches source shop\\[app=ghost\\]" in details


def test_check_markdown_of_the_passing_shop_has_no_table(capsys):
    code, out, _ = run(capsys, "check", "--manifests", str(SHOP), "--suite", str(SHOP / "suite.yaml"),
                       "--format", "markdown")
    assert code == 0
    assert out == (f"✅ **netpol-drift** suite shop-baseline on manifests {SHOP}: 8 passed, 0 failed, "
                   "0 not verified; every case holds\n\n")


def _bad_case(name: str, source: str = "ns/a"):
    from monitor.models import FlowResult, Verdict
    from monitor.report import CaseReport

    flow = FlowResult(name, source, "ns/b", 80, "TCP", Verdict.DENY, Verdict.ALLOW,
                      explanation="allowed by ns/allow-all ingress[0]")
    return CaseReport(name, "fail", "deny", "allow", "allowed by ns/allow-all ingress[0]", (flow,), live=False)


def test_markdown_escapes_pipes_and_markup_in_cluster_names():
    from monitor.report.markdown import check_markdown

    body = check_markdown("s|uite", [_bad_case("a|b <script>x</script> @team **bold** [x](http://y)",
                                               source="ns/`weird`|pod")], "cluster <prod>")
    (header, row) = table_rows(body)
    assert len(row) == len(header) == 7  # the pipes in names did not add cells
    assert row[1] == r"a\|b &lt;script&gt;x&lt;/script&gt; &#64;team \*\*bold\*\* \[x\](http://y)"
    assert row[2] == r"ns/\`weird\`\|pod"
    assert "<script>" not in body and "@team" not in body
    assert body.splitlines()[0].startswith(r"❌ **netpol-drift** suite s\|uite on cluster &lt;prod&gt;:")


def test_markdown_is_truncated_with_a_count_past_60000_characters():
    from monitor.report.markdown import MAX_CHARS, check_markdown

    cases = [_bad_case(f"case-{i:05d}-" + "x" * 60) for i in range(2000)]
    body = check_markdown("big", cases, "cluster prod")
    assert len(body) <= MAX_CHARS
    rows = table_rows(body)[1:]
    assert 100 < len(rows) < 2000
    assert rows[-1][1].startswith(f"case-{len(rows) - 1:05d}-")  # in order, none skipped before the cut
    assert body.rstrip().endswith(f"_Truncated to fit a comment: {2000 - len(rows)} more row(s) and 4000 more "
                                  "explanation(s) not shown; run the command locally for all of them._")
    assert "<details>" not in body  # explanations never shown for rows that were cut
    small = check_markdown("small", cases[:3], "cluster prod")
    assert "Truncated" not in small and small.count("- **case-") == 3


def test_diff_markdown_lists_changed_flows_and_their_causes(tmp_path, capsys):
    import shutil

    from monitor.report.markdown import text

    after = tmp_path / "after"
    shutil.copytree(SHOP, after)
    policies = (after / "policies.yaml").read_text()
    # Drop the policy that lets the frontend reach the api.
    docs = [d for d in policies.split("\n---") if "name: frontend-to-api" not in d]
    assert len(docs) < len(policies.split("\n---"))
    (after / "policies.yaml").write_text("\n---".join(docs))
    code, out, _ = run(capsys, "diff", "--before", str(SHOP), "--after", str(after), "--format", "markdown")
    assert code == 0
    first = out.splitlines()[0]
    assert first.startswith(f"⚠️ **netpol-drift diff** {text(str(SHOP))} → {text(str(after))}: ")
    assert first.endswith("1 policy or pod change(s)")
    header, *rows = table_rows(out)
    assert header == ["From", "To", "Before", "After", "Gained", "Lost"]
    assert ["shop/frontend", "shop/api"] in [r[:2] for r in rows]
    row = next(r for r in rows if r[:2] == ["shop/frontend", "shop/api"])
    assert row[3] == "none" and row[5].startswith("TCP:")
    assert "- policy removed: shop/frontend-to-api" in out
    assert "- shop/frontend → shop/api: " in out and "frontend-to-api" in out.split("- shop/frontend → shop/api: ")[1]


def test_compare_and_run_diff_markdown_from_the_store(history_db, capsys):  # noqa: F811 (the fixture)
    """Two stored clusters running the shop (tests/test_history.py's fixture): prod lost its deny policy."""
    code, out, _ = run(capsys, "compare", "--cluster", "staging", "--cluster", "prod", "--db", history_db,
                       "--map-namespace", "shop-stg=shop", "--format", "markdown")
    assert code == 1
    assert out.splitlines()[0] == ("❌ **netpol-drift compare** staging (run 3) vs prod (run 2): 1 flows agree, "
                                   "1 differ, 0 only in staging, 0 only in prod")
    assert table_rows(out) == [["Flow", "staging", "prod"],
                               [r"web-db\|shop/web\|shop/db\|5432/TCP", "deny (timeout)", "allow (connected)"]]
    code, out, _ = run(capsys, "diff", "1", "2", "--db", history_db, "--format", "markdown")
    assert code == 1
    assert out.splitlines()[0] == "⚠️ **netpol-drift diff** run 1 → run 2: 1 flow(s) changed"
    assert table_rows(out)[1] == [r"web-db\|shop/web\|shop/db\|5432/TCP", "deny (timeout)", "allow (connected)"]
    assert "- NetworkPolicy shop/deny-db removed" in out
    assert r"- web-db\|shop/web\|shop/db\|5432/TCP: config (each): NetworkPolicy shop/deny-db removed" in out


# ------------------------------------------------------------------------------------------ kubectl plugin
PLUGIN = Path(sys.executable).parent / "kubectl-netpol_drift"


def kubeconfig(path: Path, name: str, port: int, shared_host: str) -> Path:
    """A kubeconfig whose current context points at 127.0.0.1:port, plus a context `shared` defined in every
    file with a different server each (which file wins shows in the server the command tries)."""
    path.write_text(textwrap.dedent(f"""
        apiVersion: v1
        kind: Config
        current-context: ctx-{name}
        clusters:
        - {{name: c-{name}, cluster: {{server: "http://127.0.0.1:{port}"}}}}
        - {{name: shared, cluster: {{server: "http://{shared_host}:1"}}}}
        contexts:
        - {{name: ctx-{name}, context: {{cluster: c-{name}, user: u}}}}
        - {{name: shared, context: {{cluster: shared, user: u}}}}
        users:
        - {{name: u, user: {{token: not-a-secret}}}}
        """))
    return path


@pytest.fixture
def kubeconfigs(tmp_path: Path) -> dict[str, Path]:
    config = tmp_path / "netpol-drift.yaml"
    config.write_text("cluster:\n  retries: 0\n")  # a refused connection fails at once
    return {"a": kubeconfig(tmp_path / "a.yaml", "a", 1, "127.0.0.5"),
            "b": kubeconfig(tmp_path / "b.yaml", "b", 2, "127.0.0.6"), "config": config}


def plugin(*argv: str, env: dict[str, str] | None = None, exe: str | Path = PLUGIN) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    environ["PATH"] = f"{PLUGIN.parent}{os.pathsep}{environ.get('PATH', '')}"
    return subprocess.run([str(exe), *argv], env=environ | (env or {}), capture_output=True, text=True,
                          timeout=60, cwd=ROOT)


def test_the_plugin_console_script_runs_check_on_the_shop(tmp_path):
    assert PLUGIN.is_file(), "pip install -e . installs the kubectl-netpol_drift console script"
    done = plugin("check", "--manifests", str(SHOP), "--suite", str(SHOP / "suite.yaml"), "--junit",
                  str(tmp_path / "j.xml"))
    assert done.returncode == 0, done.stderr
    assert "shop-baseline: 8 passed, 0 failed, 0 skipped" in done.stdout
    assert len(junit_cases(tmp_path / "j.xml")) == 8
    usage = plugin("--help")
    assert usage.returncode == 0 and usage.stdout.startswith("usage: kubectl netpol-drift ")


def _server_tried(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1, done.stderr  # one line, no traceback
    return done.stderr.split("API server ")[1].split(" ")[0] if "API server " in done.stderr else done.stderr


@pytest.mark.parametrize(("kubeconfig_env", "flags", "server"), [
    # KUBECONFIG lists several files: merged, the first file to set a value wins, the current context too.
    ("{a}:{b}", [], "http://127.0.0.1:1"),
    ("{b}:{a}", [], "http://127.0.0.1:2"),
    ("{b}:{a}", ["--context", "shared"], "http://127.0.0.6:1"),
    ("{a}:{b}", ["--context=shared"], "http://127.0.0.5:1"),
    ("{a}:{b}", ["--context", "ctx-b"], "http://127.0.0.1:2"),  # a context only the second file has
    ("/nowhere.yaml:{b}", [], "http://127.0.0.1:2"),  # a listed file that does not exist is skipped
    # --kubeconfig names one file and wins over $KUBECONFIG.
    ("{b}", ["--kubeconfig", "{a}"], "http://127.0.0.1:1"),
])
def test_the_plugin_picks_kubeconfig_and_context_as_kubectl_does(kubeconfigs, kubeconfig_env, flags, server):
    env = {"KUBECONFIG": kubeconfig_env.format(**kubeconfigs)}
    flags = [f.format(**kubeconfigs) for f in flags]
    # kubectl users put the connection flags right after the plugin's name; after the command works too.
    before = plugin("--config", str(kubeconfigs["config"]), *flags, "suite", "generate", env=env)
    after = plugin("--config", str(kubeconfigs["config"]), "suite", "generate", *flags, env=env)
    assert _server_tried(before) == _server_tried(after) == server
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is not on PATH: `make system-deps` installs it (Debian's kubernetes-client)"
    kubectl_flags = [f for f in flags if f.startswith("--")]
    said = subprocess.run([kubectl, "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}",
                           *flags], env=os.environ | env, capture_output=True, text=True, timeout=60)
    assert said.stdout == server, (kubectl_flags, said.stderr)  # kubectl itself agrees


def test_an_unknown_context_is_one_line(kubeconfigs):
    done = plugin("--context", "nope", "--config", str(kubeconfigs["config"]), "suite", "generate",
                  env={"KUBECONFIG": str(kubeconfigs["b"])})
    assert done.returncode == 2
    assert done.stderr.startswith(f"netpol-drift: error: cannot load cluster credentials from {kubeconfigs['b']} "
                                  "(context nope): ")


def test_kubectl_finds_the_plugin_on_path_and_runs_it(tmp_path):
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is not on PATH: `make system-deps` installs it (Debian's kubernetes-client)"
    listed = plugin("plugin", "list", "--name-only", exe=kubectl)
    assert "kubectl-netpol_drift" in listed.stdout.split(), listed.stdout + listed.stderr
    done = plugin("netpol-drift", "check", "--manifests", str(SHOP), "--suite", str(SHOP / "suite.yaml"),
                  "--format", "markdown", exe=kubectl)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("✅ **netpol-drift** suite shop-baseline")


# ------------------------------------------------------------------------------------------ PolicyReports
def test_policy_reports_of_a_run_one_per_probed_namespace_and_a_cluster_summary():
    """The builder alone (the lab test reads the objects back from an API server): a case lands in the report of
    every namespace its flows start or end in; unverified cases are `skip`, never `pass`."""
    from monitor.models import FlowResult as F
    from monitor.models import Outcome, Run, Snapshot, Verdict
    from monitor.report.policyreport import policy_reports
    from monitor.run import CaseSummary, LiveRun

    A, D = Verdict.ALLOW, Verdict.DENY
    ok = F("frontend-to-api", "shop/frontend", "shop/api", 9000, "TCP", A, A, Outcome.CONNECTED, A,
           explanation="allowed by shop/frontend-to-api ingress[0]")
    bad = F("api-to-payments", "shop/api", "payments/gateway", 8443, "TCP", D, A, Outcome.CONNECTED, A,
            explanation="allowed by payments/open ingress[0]")
    skipped = F("udp-dns", "shop/api", "kube-system/dns", 53, "UDP", A, A, Outcome.TIMEOUT, Verdict.UNKNOWN)
    external = F("udp-dns", "shop/api", "10.96.0.0/12", 53, "UDP", A, A, Outcome.TIMEOUT, Verdict.UNKNOWN)
    cases = (CaseSummary("frontend-to-api", A, "pass", "allow", "connected", "allow", False, ok.explanation, (ok,)),
             CaseSummary("api-to-payments", D, "fail", "allow", "connected", "allow", False, bad.explanation,
                         (bad,)),
             CaseSummary("udp-dns", A, "unknown", "allow", "timeout", "unknown", False, "", (skipped, external)))
    run = Run("prod", "2026-11-30T10:00:00+00:00", "2026-11-30T10:00:05+00:00", "schedule", "sha256:s", "sha256:t",
              (ok, bad, skipped, external), status="partial", id="abc")
    reports = policy_reports(LiveRun(run, cases, Snapshot.build(), 2, 1.0), "shop-baseline", "netpol-drift", "42")
    by_ns = {r["metadata"]["namespace"]: r for r in reports.namespaced}
    assert list(by_ns) == ["kube-system", "payments", "shop"]  # no "namespace" 10.96.0.0 from the CIDR
    assert all(r["metadata"]["name"] == "netpol-drift" and r["kind"] == "PolicyReport" for r in by_ns.values())
    assert [(e["rule"], e["result"]) for e in by_ns["shop"]["results"]] == [
        ("frontend-to-api", "pass"), ("api-to-payments", "fail"), ("udp-dns", "skip")]
    assert by_ns["shop"]["summary"] == {"pass": 1, "fail": 1, "warn": 0, "error": 0, "skip": 1}
    assert [e["rule"] for e in by_ns["payments"]["results"]] == ["api-to-payments"]
    entry = by_ns["payments"]["results"][0]
    assert entry == {"source": "netpol-drift", "policy": "shop-baseline", "rule": "api-to-payments",
                     "category": "NetworkPolicy", "result": "fail", "scored": True,
                     "message": "allowed by payments/open ingress[0]", "severity": "high",
                     "timestamp": {"seconds": 1796032800, "nanos": 0},
                     "properties": {"run": "42", "cluster": "prod", "status": "fail", "expected": "deny",
                                    "observed": "allow", "from": "shop/api", "to": "payments/gateway",
                                    "flows": "1"}}
    assert by_ns["kube-system"]["results"][0]["message"] == "unknown"  # says why, never empty
    assert reports.cluster["kind"] == "ClusterPolicyReport" and "namespace" not in reports.cluster["metadata"]
    assert reports.cluster["summary"] == {"pass": 1, "fail": 1, "warn": 0, "error": 0, "skip": 1}
    assert len(reports.cluster["results"]) == 3
