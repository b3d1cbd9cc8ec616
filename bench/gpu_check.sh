#!/usr/bin/env bash
# GPU checks for econas-hpc, budgeted to finish within 5 minutes on an H100/H200 (every step has
# its own time limit and a step that no longer fits the remaining budget is skipped):
#   equivalence  graph path vs eager path (3 random c4r4 networks x 2 epochs) with the graph
#                replays counted, the resume, race and early-release probes and the host syncs
#                of a warm graph step (python -m econas_hpc.bench --check)         limit 100 s
#   proxy        the proxy benchmark on CUDA, reference vs ours, 28 networks x 10 steps
#                (28 x 20 steps was estimated at 135-145 s; 10 steps halve the timed
#                part, set-up and capture stay: not measured yet)               limit 140 s
#   proxy-n8     the same at 8 networks x 10 steps (to choose --segments-per-job)   limit 45 s
# Writes two files into $OUT (default: out): gpu-check.json, one summary rewritten after every
# step (a crash still leaves the figures so far), and gpu-check.log, every step's output.
# Runs with a bare machine's python3 and PYTHONPATH=. (torch and numpy; no h5py, submitit or
# rich needed). On a machine without CUDA it prints one "skipped" line, says so in the JSON and
# exits 0. Environment: OUT, PYTHON (default: .venv/bin/python when it imports torch, else
# python3), ECONAS_SWEEP=0 skips proxy-n8, ECONAS_BUDGET_S (default 290) the whole budget.
set -uo pipefail
OUT="${OUT:-out}"
mkdir -p "$OUT" || exit 2
OUT="$(cd "$OUT" && pwd)" || exit 2  # the caller's $OUT, relative to the caller's directory
cd "$(dirname "$0")/.." || exit 2
SUMMARY="$OUT/gpu-check.json"
LOG="$OUT/gpu-check.log"
: >"$LOG"
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch" 2>/dev/null; then
        PYTHON=.venv/bin/python
    fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
BUDGET="${ECONAS_BUDGET_S:-290}"
START=$SECONDS
SCRATCH="$(mktemp -d "${TMPDIR:-/tmp}/econas-gpu-check.XXXXXX")" || exit 2
trap 'rm -rf "$SCRATCH"' EXIT

"$PYTHON" -m econas_hpc.bench.summary env "$SUMMARY" 2>>"$LOG" | tee -a "$LOG"
case "${PIPESTATUS[0]}" in
    0) ;;
    3) exit 0 ;;  # no CUDA: the one-line skip is printed and in the JSON
    *) exit 2 ;;
esac
nvidia-smi >>"$LOG" 2>&1 || true

step() {  # step NAME LIMIT_S CMD...: budgeted, logged, recorded in the summary
    local name=$1 limit=$2
    shift 2
    local left=$((BUDGET - (SECONDS - START)))
    if [ "$left" -lt "$limit" ]; then
        echo "== $name skipped: ${left} s of the budget left, it needs ${limit} s" | tee -a "$LOG"
        "$PYTHON" -m econas_hpc.bench.summary skip "$SUMMARY" "$name" "budget: ${left} s left"
        return
    fi
    local began=$SECONDS
    echo "== $name (limit ${limit} s): $*" | tee -a "$LOG"
    timeout --kill-after=10 "$limit" "$@" --out "$SCRATCH/$name.json" >>"$LOG" 2>&1
    local rc=$?
    echo "   $name: rc $rc after $((SECONDS - began)) s" | tee -a "$LOG"
    "$PYTHON" -m econas_hpc.bench.summary step "$SUMMARY" "$name" "$rc" \
        "$((SECONDS - began))" "$limit" "$SCRATCH/$name.json" 2>>"$LOG"
}

CACHE="$SCRATCH/cache"  # synthetic images: kept out of $OUT
BENCH=("$PYTHON" -m econas_hpc.bench --cache-dir "$CACHE")
step equivalence 100 "${BENCH[@]}" --check --device cuda --json
step proxy 140 "${BENCH[@]}" --device cuda --steps 10 --json
if [ "${ECONAS_SWEEP:-1}" != 0 ]; then
    step proxy-n8 45 "${BENCH[@]}" --device cuda --networks 8 --steps 10 --json
fi
"$PYTHON" -m econas_hpc.bench.summary finish "$SUMMARY" | tee -a "$LOG"
exit "${PIPESTATUS[0]}"
