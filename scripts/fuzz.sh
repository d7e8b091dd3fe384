#!/bin/bash
# Runs one libFuzzer target for a bounded time: scripts/fuzz.sh TARGET SECONDS
#   TARGET: head response chunked range url mirror config peer (or "all")
# Builds the fuzz driver with -sanitize=fuzzer in .build-fuzz, starts from the committed seed corpus
# (Tests/Fuzz/corpus/TARGET, never written to) plus earlier crashes (Tests/Fuzz/regressions/TARGET),
# and keeps what it learns in .build-fuzz/corpus/TARGET for the next run. A crash stops the run, exits
# non-zero and leaves its input in .build-fuzz/artifacts/TARGET/: copy it to
# Tests/Fuzz/regressions/TARGET/ and the unit tests replay it forever after.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: scripts/fuzz.sh TARGET SECONDS}
seconds=${2:?usage: scripts/fuzz.sh TARGET SECONDS}
targets=(head response chunked range url mirror config peer)
if [ "$target" = all ]; then
  for t in "${targets[@]}"; do "$0" "$t" "$seconds"; done
  exit 0
fi
[[ " ${targets[*]} " == *" $target "* ]] || { echo "unknown target $target (one of: ${targets[*]})" >&2; exit 2; }

swift build --sanitize=fuzzer -Xcc -DDFGET_LIBFUZZER --scratch-path .build-fuzz --product dfget-fuzz 2>&1 | tail -1
bin=.build-fuzz/debug/dfget-fuzz
learnt=.build-fuzz/corpus/$target
artifacts=.build-fuzz/artifacts/$target
mkdir -p "$learnt" "$artifacts"
# Swift's own backtracer would swallow the trap libFuzzer needs to see.
export SWIFT_BACKTRACE=enable=no DFGET_FUZZ_TARGET=$target
set +e
"$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
  -artifact_prefix="$artifacts/" "$learnt" Tests/Fuzz/corpus/"$target" Tests/Fuzz/regressions/"$target" \
  > "$artifacts/last-run.log" 2>&1
rc=$?
set -e
grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$artifacts/last-run.log" | tr '\n' ' ' | sed "s/^/fuzz $target: /"; echo
if [ $rc -ne 0 ]; then
  grep -E "ERROR|SUMMARY|Fatal error|Test unit written" "$artifacts/last-run.log" | head -20 >&2
  echo "fuzz $target: FAILED (input in $artifacts/; copy it to Tests/Fuzz/regressions/$target/)" >&2
  exit 1
fi
