#!/usr/bin/env bash
# Run every fuzz target for SECONDS each (default 60), starting from its seed corpus.
#
#   fuzz/run_all.sh 60            # the CI smoke: about 3 minutes in all
#   PYTHON=.venv/bin/python fuzz/run_all.sh 600
#
# Needs atheris (`pip install '.[fuzz]'`). New inputs the fuzzer finds go to
# fuzz/corpus-<target>/ (git-ignored); a crash leaves crash-* / timeout-* files in fuzz/
# and makes this script exit non-zero.
set -euo pipefail
seconds=${1:-60}
cd "$(dirname "$0")"
python=${PYTHON:-python3}
"$python" -c "import atheris" 2>/dev/null || {
    echo "atheris is not installed: pip install '.[fuzz]'" >&2
    exit 2
}
failed=0
for target in policy cli capture; do
    corpus="corpus-$target"
    mkdir -p "$corpus"
    echo "== fuzz_$target: ${seconds}s"
    if ! "$python" "fuzz_$target.py" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 \
        -print_final_stats=1 "$corpus" "seeds/$target"; then
        echo "== fuzz_$target FOUND A CRASH (see crash-* in $(pwd))" >&2
        failed=1
    fi
done
exit $failed
