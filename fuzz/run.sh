#!/bin/sh
# Fuzz one target (or all of them, one after the other) for a while.
#
#   fuzz/run.sh TARGET [SECONDS] [LIBFUZZER OPTIONS...]
#   fuzz/run.sh all [SECONDS]
#
# SECONDS defaults to 600 (per target). The machine's stable toolchain is
# used through RUSTC_BOOTSTRAP=1, since cargo-fuzz needs -Z flags. New
# interesting inputs go to fuzz/target/corpus/TARGET (not committed); the
# hand-made seeds in fuzz/corpus/TARGET are read, never written. A crash is
# saved under fuzz/artifacts/TARGET/, where `cargo test` replays it.
set -eu

usage() {
    echo "usage: $0 TARGET|all [SECONDS] [LIBFUZZER OPTIONS...]" >&2
    echo "targets: $(ls "$dir/fuzz_targets" | sed 's/\.rs$//' | tr '\n' ' ')" >&2
    exit 2
}

dir=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || usage
target=$1
seconds=${2:-600}
[ $# -ge 2 ] && shift 2 || shift 1
case $seconds in '' | *[!0-9]*) usage ;; esac

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

cd "$dir"
if [ "$target" = all ]; then
    failed=
    for t in $(ls fuzz_targets | sed 's/\.rs$//'); do
        "$dir/run.sh" "$t" "$seconds" "$@" || failed="$failed $t"
    done
    [ -z "$failed" ] || { echo "failed:$failed" >&2; exit 1; }
    exit 0
fi
[ -f "fuzz_targets/$target.rs" ] || usage

mkdir -p "target/corpus/$target" "artifacts/$target"
# -timeout: any one input taking seconds is a bug (everything here is linear).
# -rss_limit_mb: the properties hold bounded memory; 2 GB is a leak.
exec cargo fuzz run "$target" "target/corpus/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "$@"
