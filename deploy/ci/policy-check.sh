#!/usr/bin/env bash
# Checks a policy change before it merges: runs `netpol-drift check` (the suite against the change's
# manifests) and `netpol-drift diff` (which flows the change opens or closes against the target branch), and
# writes the pull-request comment to $OUT_DIR/comment.md, plus the HTML reachability matrix (matrix.html) and
# the check as JUnit XML (junit.xml, for the CI's test report). Both CI examples in this directory run this
# script; so does tests/test_ci_example.py, on two revisions of a real git repository.
#
# Usage: policy-check.sh BASE_REF MANIFESTS_DIR SUITE_FILE [OUT_DIR]
#   BASE_REF       the target branch's commit (origin/main, $CI_MERGE_REQUEST_DIFF_BASE_SHA...)
#   MANIFESTS_DIR  the directory of manifests, relative to the repository root
#   SUITE_FILE     the suite, as of the change (relative to the repository root)
# Exit status: that of `netpol-drift check` (0 every case met, 1 some did not, 2 bad input), so the job fails
# when the change breaks the suite; the comment is written in every case.
set -uo pipefail

base_ref=$1 manifests=$2 suite=$3 out=${4:-netpol-drift-report}
netpol_drift=${NETPOL_DRIFT:-netpol-drift}
mkdir -p "$out"
before=$(mktemp -d)
trap 'rm -rf "$before"' EXIT

# The target branch's manifests, without touching the working tree.
if git cat-file -e "$base_ref:$manifests" 2>/dev/null; then
  git archive "$base_ref" "$manifests" | tar -x -C "$before"
else
  mkdir -p "$before/$manifests"   # the directory is new in this change: everything it allows is a change
fi

"$netpol_drift" check --manifests "$manifests" --suite "$suite" --junit "$out/junit.xml" >"$out/check.txt" 2>&1
check_status=$?
"$netpol_drift" diff --before "$before/$manifests" --after "$manifests" --format markdown >"$out/diff.md" 2>&1
diff_status=$?
# The target branch's side by its commit, not by the temporary directory it was extracted to.
base_short=$(git rev-parse --short "$base_ref")
diff_text=$(<"$out/diff.md")
printf '%s\n' "${diff_text//"$before/$manifests"/"$base_short:$manifests"}" >"$out/diff.md"
"$netpol_drift" matrix --manifests "$manifests" --format html >"$out/matrix.html" 2>/dev/null || rm -f "$out/matrix.html"

case $check_status in
  0) verdict="every case of the suite holds" ;;
  1) verdict="some cases of the suite do NOT hold" ;;
  *) verdict="the suite could not be checked (bad input)" ;;
esac
{
  echo "<!-- netpol-drift policy check -->"
  echo "### netpol-drift: $verdict"
  echo
  echo "\`netpol-drift check\` of \`$suite\` on \`$manifests\` (exit $check_status):"
  echo
  echo '```text'
  cat "$out/check.txt"
  echo '```'
  echo
  echo "#### Reachability changes against \`$base_short\`"
  echo
  if [[ $diff_status -ne 0 ]]; then
    echo "\`netpol-drift diff\` failed (exit $diff_status):"
    echo
    echo '```text'; cat "$out/diff.md"; echo '```'
  else
    cat "$out/diff.md"
  fi
} >"$out/comment.md"
exit "$check_status"
