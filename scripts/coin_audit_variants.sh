#!/usr/bin/env bash
# The Coin Game learner's options measured against the exact audit (docs/coin.md): 3x3
# random_one, principal + validation phases only, the same seeds and budget per row.
# Usage: scripts/coin_audit_variants.sh OUT_DIR [ITERATIONS] [SEEDS]; resumable (rerun it).
# Then: python scripts/coin_fix_ablation_table.py OUT_DIR --columns audit
set -euo pipefail
out=${1:?usage: coin_audit_variants.sh OUT_DIR [ITERATIONS] [SEEDS]}
iterations=${2:-10000}
seeds=${3:-3}
bin=${CONTRACTRL:-.venv/bin/contractrl}
common=(--preset headline-3x3 --iterations "$iterations" --seeds "$seeds" --baselines ""
        --no-progress)
declare -A rows=(
  [base]=""
  [greedy-partner]="--no-explore-recommendations"
  [replay-0.1]="--replay-fraction 0.1"
  [epsilon-0.5]="--epsilon-fraction 0.5"
)
order=(base greedy-partner replay-0.1 epsilon-0.5)
# shellcheck source=scripts/variant_runs.sh
source "$(dirname "$0")/variant_runs.sh"
run_variants
