#!/usr/bin/env bash
# The Coin Game device check, one prepared script for a lent GPU machine (its own CUDA JAX,
# flax and optax; the package from src/, not installed). Writes under $OUT:
#   device_log.txt   devices, versions, the benchmark table, the protocol's last lines
#   device_bench.json  bench_coin_device.py rows (seeds vmapped on the GPU)
#   device_tests.txt   the learning and multi-agent tests on the GPU
#   coin7.tgz          the 7x7 protocol (5 seeds, ITER iterations per phase) on the GPU
# Usage (on the device): OUT=/some/dir bash benchmarks/device_check.sh
set -u
OUT=${OUT:-/tmp/device-out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
log=$OUT/device_log.txt
nvidia-smi -L >>"$log" 2>&1
nproc >>"$log"
python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, \
'optax', optax.__version__, jax.devices())" >>"$log" 2>&1
[ -n "${SKIP_BENCH:-}" ] || timeout 150 python3 benchmarks/bench_coin_device.py --grids 3 7 \
  --seeds 1 8 --iterations 1000 --json "$OUT/device_bench.json" >>"$log" 2>&1
echo "bench rc=$?" >>"$log"
# the 7x7 protocol on the GPU: one worker process per seed, all sharing the GPU
ITER=${ITER:-25000}
JAX_PLATFORMS=cuda timeout ${PROTOCOL_TIMEOUT:-330} python3 -m contractrl.experiments.cli train \
  coin --preset budget-7x7 --seeds 5 --workers 5 --iterations "$ITER" --eval-every 5000 \
  --nudge-share 0 --no-progress --out /tmp/coin7 >>"$log" 2>&1
echo "protocol rc=$?" >>"$log"
tar czf "$OUT/coin7.tgz" -C /tmp coin7 2>>"$log"
timeout ${TESTS_TIMEOUT:-100} python3 -m pytest -q -n 8 -p no:cacheprovider -p no:benchmark -m "not slow" \
  tests/learning tests/multiagent tests/envs/test_tabular.py tests/envs/test_coin_scripted.py >"$OUT/device_tests.txt" 2>&1
echo "tests rc=$?" >>"$log"
tar czf "$OUT/coin7.tgz" -C /tmp coin7 2>>"$log"
