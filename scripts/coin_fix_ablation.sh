#!/usr/bin/env bash
# Before/after table of the Coin Game learner fixes (issue "Coin Game results that hold"):
# 3x3 random_one, principal + validation phases only, the same seeds and budget per row.
# Usage: scripts/coin_fix_ablation.sh OUT_DIR [ITERATIONS] [SEEDS]; resumable (rerun it).
# Then: python scripts/coin_fix_ablation_table.py OUT_DIR
set -euo pipefail
out=${1:?usage: coin_fix_ablation.sh OUT_DIR [ITERATIONS] [SEEDS]}
iterations=${2:-20000}
seeds=${3:-3}
bin=${CONTRACTRL:-.venv/bin/contractrl}
common=(--preset budget-3x3 --iterations "$iterations" --eval-every 5000 --seeds "$seeds"
        --baselines "" --nudge-share 0 --workers "${WORKERS:-1}" --no-progress)
declare -A rows=(
  [before]="--time-limit terminate --principal-cost unpaid_deviations --learning-starts 0 --clip-scope global"
  [fixed]=""
  [fixed-but-terminate]="--time-limit terminate"
  [fixed-but-unpaid-deviations]="--principal-cost unpaid_deviations"
  [fixed-but-followers-only]="--principal-cost followers_only"
  [fixed-but-no-learning-starts]="--learning-starts 0"
  [fixed-but-global-clip]="--clip-scope global"
)
order=(before fixed fixed-but-terminate fixed-but-unpaid-deviations fixed-but-followers-only
       fixed-but-no-learning-starts fixed-but-global-clip)
# shellcheck source=scripts/variant_runs.sh
source "$(dirname "$0")/variant_runs.sh"
run_variants
