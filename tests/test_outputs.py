"""The shared output formats on the example shop (issue 19): JUnit XML, pull-request markdown, the kubectl plugin.

JUnit files are validated against tests/data/junit.xsd (the strict common subset of the schemas CI readers use,
see its header) with xmlschema, then read back case by case.
"""

from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema

from monitor.cli import main

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
    assert skipped.get("message") == "not verified: no live pod matches source shop[app=ghost]"
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
