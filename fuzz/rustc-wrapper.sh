#!/usr/bin/env bash
# rustc as cargo calls it, with libFuzzer's coverage instrumentation (SanitizerCoverage, a stable
# rustc flag) added for the crates named in FUZZ_INSTRUMENT only: the dependencies compile as the
# relay's test build compiled them, so run.sh reuses that build instead of building them again.
rustc="$1"
shift
crate=""
prev=""
for arg in "$@"; do
  if [ "$prev" = "--crate-name" ]; then
    crate="$arg"
    break
  fi
  prev="$arg"
done
case " ${FUZZ_INSTRUMENT:-} " in
  *" $crate "*)
    exec "$rustc" "$@" --cfg fuzzing -Cpasses=sancov-module \
      -Cllvm-args=-sanitizer-coverage-level=4 \
      -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
      -Cllvm-args=-sanitizer-coverage-pc-table \
      -Cllvm-args=-sanitizer-coverage-trace-compares \
      -Cllvm-args=-sanitizer-coverage-stack-depth ;;
  *) exec "$rustc" "$@" ;;
esac
