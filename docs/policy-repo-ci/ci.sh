#!/usr/bin/env bash
# CI for a repository of Tiergate policies. Runs every gate and fails at the end if any failed,
# so one run shows the compliance officer everything that needs fixing.
#
#   POLICY_DIR   the policy set to check (default: policies)
#   BASE_DIR     on a pull request: the same directory as on the base branch; then
#                `tiergate diff` lists the request classes the change newly permits or denies
#   TIERGATE     the command to run (default: tiergate)
#   REPORTS      where JUnit XML and the HTML report go (default: reports)
set -u
POLICY_DIR=${POLICY_DIR:-policies}
BASE_DIR=${BASE_DIR:-}
TIERGATE=${TIERGATE:-tiergate}
REPORTS=${REPORTS:-reports}
mkdir -p "$REPORTS"
failed=()

step() {
  local name=$1; shift
  echo "== $name: $*"
  "$@"
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "!! $name failed (exit $rc)"
    failed+=("$name")
  fi
}

step check $TIERGATE check "$POLICY_DIR"
step fmt   $TIERGATE fmt --check "$POLICY_DIR"
step lint  $TIERGATE lint "$POLICY_DIR"
step test  $TIERGATE test "$POLICY_DIR" --min-coverage 100 --junit "$REPORTS/policy-tests.xml"
$TIERGATE report "$POLICY_DIR" --html "$REPORTS/policy-report.html" >/dev/null 2>&1 || true

if [ -n "$BASE_DIR" ]; then
  echo "== diff: $TIERGATE diff $BASE_DIR $POLICY_DIR"
  $TIERGATE diff "$BASE_DIR" "$POLICY_DIR" | tee "$REPORTS/policy-diff.txt"
  rc=${PIPESTATUS[0]}
  # 2 = the change alters decisions: not a failure, but the reviewer must read the list.
  if [ "$rc" -eq 2 ]; then
    echo "** this change alters decisions; see $REPORTS/policy-diff.txt (review required)"
  elif [ "$rc" -ne 0 ]; then
    echo "!! diff failed (exit $rc)"
    failed+=("diff")
  fi
fi

if [ ${#failed[@]} -ne 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
echo "all policy checks passed"
