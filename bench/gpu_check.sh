#!/usr/bin/env bash
# GPU checks for econas-hpc: about 3.5 minutes expected on an H100/H200; every step has its own
# time limit (6.5 minutes in all at worst).
#   1. graph path vs eager path: 3 random c4r4 networks x 2 epochs trained packed (CUDA graphs,
#      one stream each) and one by one eagerly; weights and losses must agree within fp
#      tolerance, and a warm graph step must issue zero host syncs   -> $OUT/gpu-check.json
#   2. the proxy benchmark on CUDA, reference vs ours, 28 networks x 20 steps
#                                                                    -> $OUT/bench-proxy.json
#   3. the same at 1, 4 and 8 networks x 10 steps (to choose --segments-per-job)
#                                                                    -> $OUT/bench-proxy-n{1,4,8}.json
# (Driver work per cycle is a CPU figure, goal G6 on the 2-core dev machine: not measured here.)
# Needs only PyTorch, torchvision, numpy, h5py and rich; the package comes from this checkout.
# Environment: ECONAS_OUT (default: out), PYTHON (default: .venv/bin/python when it imports
# torch, else python3), ECONAS_SWEEP=0 skips step 3.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
OUT="${ECONAS_OUT:-out}"
mkdir -p "$OUT"
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch" 2>/dev/null; then
        PYTHON=.venv/bin/python
    fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
failed=0

run() {  # run NAME LIMIT_S CMD...: log to $OUT/NAME.log, keep going on failure, time it
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    echo "== $name (limit ${limit} s): $*"
    if timeout "$limit" "$@" >"$OUT/$name.log" 2>&1; then
        echo "   ok ($((SECONDS - start)) s)"
    else
        echo "   FAILED ($((SECONDS - start)) s); last lines of $OUT/$name.log:"
        failed=1
    fi
    tail -n 25 "$OUT/$name.log"
}

{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
    "$PYTHON" -c "import torch, torchvision; print('torch', torch.__version__, 'cuda',
torch.version.cuda, 'torchvision', torchvision.__version__, 'device',
torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)"
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no CUDA device visible to $PYTHON" >&2
    exit 2
fi

CACHE="${TMPDIR:-/tmp}/econas-bench-cache"  # synthetic images: kept out of $OUT
BENCH=("$PYTHON" -m econas_hpc.bench --cache-dir "$CACHE")
run gpu-check 90 "${BENCH[@]}" --check --json "$OUT/gpu-check.json"
run bench-proxy 150 "${BENCH[@]}" --device cuda --json "$OUT/bench-proxy.json"
if [ "${ECONAS_SWEEP:-1}" != 0 ]; then
    for n in 1 4 8; do
        run "bench-proxy-n$n" 45 "${BENCH[@]}" --device cuda --networks "$n" --steps 10 \
            --json "$OUT/bench-proxy-n$n.json"
    done
fi
exit "$failed"
