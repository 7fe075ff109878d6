"""JUnit XML for CI test-report views (Jenkins, GitLab, GitHub actions that read JUnit): `--junit FILE`.

One <testsuite> per suite, one <testcase> per case. A case that did not hold is a <failure> whose message
says expected and observed and whose text lists every offending flow with its explanation; a case that could
not be verified (skipped, partially probed, no verdict) is <skipped> with the reason: CI must never count it
as passed. The shape is the strict common subset CI readers accept (tests/data/junit.xsd checks it).
This module must not write files, print or read the clock (the caller passes the run's time).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence

from monitor.report import FAILED, PASSED, CaseReport, counts, flow_line

# XML 1.0 cannot carry most control characters, even escaped; cluster-sourced text could hold them.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(value: str) -> str:
    return _NOT_XML.sub("\ufffd", value)


def junit_xml(suite: str, cases: Sequence[CaseReport], *, timestamp: str, seconds: float, hostname: str,
              properties: dict[str, str]) -> str:
    """The JUnit document of one suite's results. `timestamp` is ISO 8601 (the run's start)."""
    n = counts(cases)
    attrs = {"tests": str(len(cases)), "failures": str(n["fail"]), "errors": "0",
             "skipped": str(n["unverified"]), "time": f"{seconds:.3f}"}
    root = ET.Element("testsuites", {"name": "netpol-drift", **attrs})
    ts = ET.SubElement(root, "testsuite", {"name": _text(suite), **attrs, "timestamp": timestamp[:19],
                                           "hostname": _text(hostname)})
    props = ET.SubElement(ts, "properties")
    for key, value in properties.items():
        ET.SubElement(props, "property", {"name": key, "value": _text(value)})
    per_case = seconds / len(cases) if cases else 0.0
    for c in cases:
        tc = ET.SubElement(ts, "testcase", {"name": _text(c.name), "classname": _text(suite),
                                            "time": f"{per_case:.3f}"})
        if c.status == FAILED:
            seen = "observed" if c.live else "policies say"
            failure = ET.SubElement(tc, "failure", {
                "message": _text(f"expected {c.expected}, {seen} {c.observed}: {c.explanation}"),
                "type": "enforcement" if c.live else "policy"})
            failure.text = _text("\n".join(flow_line(f, c.live) for f in (c.offending() or c.flows)))
        elif c.status != PASSED:
            what = {"skipped": "not verified", "partial": "only partly verified",
                    "unknown": "no verdict"}.get(c.status, c.status)
            ET.SubElement(tc, "skipped", {"message": _text(f"{what}: {c.explanation}" if c.explanation else what)})
        out = "\n".join(flow_line(f, c.live) for f in c.flows)
        if out:
            ET.SubElement(tc, "system-out").text = _text(out)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
