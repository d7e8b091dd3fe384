#!/bin/bash
# Runs every test: Swift unit tests, then the end-to-end suite against real docker-registry,
# containerd/ctr, skopeo and curl on 127.0.0.1. Needs root (containerd, /etc/hosts) and the
# packages from scripts/install-deps.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
swift build --build-tests 2>&1 | tail -3
swift test 2>&1 | tee /tmp/dfget-unit.log | grep -E "error|failed|Executed .* tests" | tail -5
unit=${PIPESTATUS[0]}
# Every fuzz target for a short bounded time (a crash fails the run; scripts/fuzz.sh says how to keep it).
fuzz_pass=0; fuzz_fail=0
for t in head response chunked range url mirror config peer; do
  if bash scripts/fuzz.sh "$t" "${FUZZ_SECONDS:-15}"; then fuzz_pass=$((fuzz_pass + 1)); else fuzz_fail=$((fuzz_fail + 1)); fi
done
BIN="$(swift build --show-bin-path)/dfget"
DFGET_BIN="$BIN" python3 -m pytest -q -p no:cacheprovider Tests/e2e "$@" 2>&1 | tee /tmp/dfget-e2e.log
e2e=${PIPESTATUS[0]}
u_pass=$(grep -Eo "Executed [0-9]+ tests?, with [0-9]+ failures?" /tmp/dfget-unit.log | tail -1 | awk '{print $2 - $5}')
u_fail=$(grep -Eo "Executed [0-9]+ tests?, with [0-9]+ failures?" /tmp/dfget-unit.log | tail -1 | awk '{print $5}')
e_pass=$(tail -1 /tmp/dfget-e2e.log | grep -Eo "[0-9]+ passed" | awk '{print $1}')
e_fail=$(tail -1 /tmp/dfget-e2e.log | grep -Eo "[0-9]+ (failed|error)" | awk '{s+=$1} END {print s+0}')
echo "unit: ${u_pass:-0} passed, ${u_fail:-1} failed; fuzz: $fuzz_pass passed, $fuzz_fail failed; e2e: ${e_pass:-0} passed, ${e_fail:-0} failed"
echo "$(( ${u_pass:-0} + fuzz_pass + ${e_pass:-0} )) passed, $(( ${u_fail:-1} + fuzz_fail + ${e_fail:-0} )) failed"
[ "$unit" -eq 0 ] && [ "$fuzz_fail" -eq 0 ] && [ "$e2e" -eq 0 ]
