#!/usr/bin/env bash
# The Coin Game device check: one prepared script for a lent GPU machine (its own CUDA JAX,
# flax and optax; the package from src/, not installed), sized to end within BUDGET seconds.
#   1. devices and versions
#   2. bench_coin_device.py: the vmap backend's stage programs (it/s per lane and in total,
#      loop copies, bit-identical repeats), 7x7 and 3x3
#   3. the 7x7 protocol (5 seeds, paper preset, --backend vmap) with as many iterations per
#      phase as the measured rate fits into what is left of BUDGET (1M if it fits)
#   4. if time is left: the same bench row with --xla_gpu_deterministic_ops=true
# Writes under $OUT: device_log.txt, device_bench.json, device_bench_det.json,
# coin7_results.json and coin7.tgz (the whole experiment directory).
# Usage (on the device): OUT=/some/dir BUDGET=580 bash benchmarks/device_check.sh
set -u
OUT=${OUT:-/tmp/device-out}
BUDGET=${BUDGET:-580}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
start=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - start))); }
log=$OUT/device_log.txt
{
  nvidia-smi -L
  python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, \
'optax', optax.__version__, jax.devices())"
} >>"$log" 2>&1

timeout ${BENCH_TIMEOUT:-200} python3 benchmarks/bench_coin_device.py \
  --rows 7:5:stage1:sum_tree 7:5:stage1:prefix_sum 3:5:stage1:sum_tree 7:1:principal:sum_tree \
  7:20:principal:sum_tree --iterations 2000 --mapped-predicate 7:5 \
  --json "$OUT/device_bench.json" >>"$log" 2>&1
echo "bench rc=$? left=$(left)s" >>"$log"

# size the protocol: 2 stages x N iterations at the measured 15-lane rate (stage 2 has more
# lanes: take 70% of it), after ~150 s of compilation and evaluations
read -r SAMPLER ITER < <(python3 - "$OUT/device_bench.json" "$(left)" <<'EOF'
import json, sys
try:
    rows = json.load(open(sys.argv[1]))["rows"]
except Exception:
    rows = []
cands = [r for r in rows if r["grid"] == 7 and r["learners"] == "stage1"]
best = max(cands, key=lambda r: r["per_lane_it_s"]) if cands else None
sampler = best["sampler"] if best else "sum_tree"
rate = 0.7 * best["per_lane_it_s"] if best else 800.0
seconds = int(sys.argv[2]) - 150
n = int(max(10_000, min(1_000_000, seconds * rate / 2)) // 10_000 * 10_000)
print(sampler, n)
EOF
)
echo "protocol: sampler=$SAMPLER iterations=$ITER left=$(left)s" >>"$log"
timeout $(( $(left) - 25 )) python3 -m contractrl.experiments.cli train coin --preset paper-7x7 \
  --backend vmap --seeds 5 --iterations "$ITER" --eval-every $((ITER / 10)) \
  --replay-sampler "$SAMPLER" --checkpoint-seconds 100000 --no-progress --out /tmp/coin7 \
  >>"$log" 2>&1
echo "protocol rc=$? left=$(left)s" >>"$log"
cp /tmp/coin7/results.json "$OUT/coin7_results.json" 2>>"$log"
tar czf "$OUT/coin7.tgz" --exclude='*.msgpack' -C /tmp coin7 2>>"$log"

if [ "$(left)" -gt 70 ]; then
  XLA_FLAGS=--xla_gpu_deterministic_ops=true timeout $(( $(left) - 10 )) python3 \
    benchmarks/bench_coin_device.py --rows "7:5:stage1:$SAMPLER" --iterations 2000 \
    --json "$OUT/device_bench_det.json" >>"$log" 2>&1
  echo "deterministic-ops bench rc=$? left=$(left)s" >>"$log"
fi
tail -n 40 "$log"
