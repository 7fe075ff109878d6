"""deploy/ci/: the policy-change check the GitHub Actions and GitLab CI examples run, on two revisions of a
real git repository of policies (the example shop, then its changed policies): the comment says the suite no
longer holds and lists the flows the change closes, against the target branch's commit.

The CI files themselves must call that same script (what runs here is what runs there).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CI = REPO / "deploy" / "ci"
SHOP = REPO / "config" / "examples" / "shop"
SHOP_CHANGED = REPO / "config" / "examples" / "shop-changed"
NETPOL_DRIFT = Path(sys.executable).parent / "netpol-drift"


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example", "GIT_CONFIG_GLOBAL": "/dev/null"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def policy_repo(tmp_path: Path) -> Path:
    """main: the shop and its suite; the pull request's head: the shop's changed policies."""
    repo = tmp_path / "policies"
    (repo / "k8s").mkdir(parents=True)
    for f in SHOP.glob("*.yaml"):
        if f.name != "suite.yaml":
            shutil.copy(f, repo / "k8s" / f.name)
    shutil.copy(SHOP / "suite.yaml", repo / "netpol-suite.yaml")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "shop")
    git(repo, "checkout", "-qb", "change")
    shutil.copy(SHOP_CHANGED / "policies.yaml", repo / "k8s" / "policies.yaml")
    git(repo, "commit", "-qam", "tighten policies")
    return repo


def run_check(repo: Path, base: str, out: str = "report") -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CI / "policy-check.sh"), base, "k8s", "netpol-suite.yaml", out], cwd=repo,
                          env={**os.environ, "NETPOL_DRIFT": str(NETPOL_DRIFT)}, capture_output=True, text=True,
                          timeout=120)


def test_a_change_that_breaks_the_suite_fails_and_comments_the_closed_flows(policy_repo):
    result = run_check(policy_repo, "main")
    comment = (policy_repo / "report" / "comment.md").read_text()
    assert result.returncode == 1, result.stderr + comment
    assert "### netpol-drift: some cases of the suite do NOT hold" in comment
    assert f"against `{git(policy_repo, 'rev-parse', '--short', 'main').strip()}`" in comment
    diff = (policy_repo / "report" / "diff.md").read_text()
    # The change narrows db's ingress from tier=backend to app=api and moves payments to 8444.
    assert "payments/gateway" in diff and diff.strip() in comment
    expected = subprocess.run([str(NETPOL_DRIFT), "diff", "--before", str(SHOP), "--after", str(policy_repo / "k8s"),
                               "--format", "markdown"], capture_output=True, text=True)
    # What the comment says is what netpol-drift says of the two revisions (not of the working tree's base).
    base = git(policy_repo, "rev-parse", "--short", "main").strip()
    assert diff.splitlines()[0].startswith(f"⚠️ **netpol-drift diff** {base}:k8s → k8s: 2 flow(s) changed")
    assert diff.splitlines()[1:] == expected.stdout.splitlines()[1:]
    assert "<html" in (policy_repo / "report" / "matrix.html").read_text().lower()
    junit = (policy_repo / "report" / "junit.xml").read_text()
    assert "<testsuite" in junit and "<failure" in junit


def test_a_change_that_keeps_the_suite_passes_and_says_so(policy_repo):
    """The target branch against itself: the suite holds (exit 0) and the diff finds nothing."""
    git(policy_repo, "checkout", "-q", "main")
    result = run_check(policy_repo, "main")
    comment = (policy_repo / "report" / "comment.md").read_text()
    assert result.returncode == 0, result.stderr + comment
    assert "### netpol-drift: every case of the suite holds" in comment
    assert "payments/gateway" not in (policy_repo / "report" / "diff.md").read_text()
    assert "<failure" not in (policy_repo / "report" / "junit.xml").read_text()


def test_both_ci_examples_run_the_script_with_the_target_branch_and_post_its_comment():
    github = yaml.safe_load((CI / "github-actions.yaml").read_text())
    steps = github["jobs"]["policy-check"]["steps"]
    runs = "\n".join(s.get("run", "") for s in steps)
    assert 'policy-check.sh "origin/${{ github.base_ref }}" "$MANIFESTS" "$SUITE" report' in runs
    assert "--body-file report/comment.md" in runs
    assert github["permissions"]["pull-requests"] == "write"
    assert github["jobs"]["policy-check"]["steps"][0]["with"]["fetch-depth"] == 0
    gitlab = yaml.safe_load((CI / "gitlab-ci.yaml").read_text())["netpol-drift"]
    script = "\n".join(gitlab["script"])
    assert 'policy-check.sh "$CI_MERGE_REQUEST_DIFF_BASE_SHA" "$MANIFESTS" "$SUITE" report' in script
    assert "report/comment.md" in script and "/notes" in script
    assert gitlab["artifacts"]["when"] == "always"
