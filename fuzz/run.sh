#!/usr/bin/env bash
# Builds every fuzz target and runs each for a bounded time from its seed corpus, so that none
# can rot; CI calls it (.ci/run). FUZZ_SECONDS (default 15) is the time per target; a target
# name or names limit the run; a crash fails it and leaves the input in fuzz/artifacts/.
#
# No nightly toolchain and no cargo-fuzz: the coverage instrumentation libFuzzer needs
# (SanitizerCoverage) is a stable rustc flag, and libfuzzer-sys builds libFuzzer with the
# machine's C++ compiler. The build is unoptimized (quick to make, slow to run: a smoke test, not
# a search); long optimized runs with AddressSanitizer: README "Reliability".
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-15}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(segment_scan summary_file record marks dedup_block packed parse)
fi

# The relay's own lock pins every dependency the two builds share; cargo adds libfuzzer-sys.
cp ../Cargo.lock Cargo.lock

# In the relay's dev profile and target dir, with the instrumentation added to the relay and the
# targets only (rustc-wrapper.sh): the dependencies `tests/run.sh` compiled are reused as they
# are, so CI builds little more than the relay once again.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$(cd .. && pwd)/target}"
export RUSTC_WRAPPER="$PWD/rustc-wrapper.sh"
export FUZZ_INSTRUMENT="whaticket_relay ${targets[*]}"
echo "fuzz/run.sh: building ${targets[*]}"
cargo build $(printf -- '--bin %s ' "${targets[@]}")

mkdir -p artifacts
passed=0
for target in "${targets[@]}"; do
  case "$target" in
    parse) seeds=../tests/fixtures ;;
    *) seeds="seeds/$target" ;;
  esac
  # New inputs go to a scratch corpus (the seeds are only read), and the target's own scratch
  # files to a temp dir of this run's.
  scratch="$(mktemp -d)"
  mkdir "$scratch/corpus" "$scratch/tmp"
  log="$scratch/log"
  if ! TMPDIR="$scratch/tmp" "$CARGO_TARGET_DIR/debug/$target" -max_total_time="$seconds" \
      -timeout=10 -rss_limit_mb=2048 -artifact_prefix="artifacts/$target-" -print_final_stats=1 \
      "$scratch/corpus" "$seeds" >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    rm -rf "$scratch"
    echo "fuzz/run.sh: $target failed; the input is in fuzz/artifacts/" >&2
    exit 1
  fi
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  echo "fuzz/run.sh: $target: ${runs:-?} runs in ${seconds} s, no failure"
  rm -rf "$scratch"
  passed=$((passed + 1))
done
echo "fuzz: $passed passed, 0 failed"
