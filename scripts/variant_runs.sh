# Sourced by the variant scripts (coin_fix_ablation.sh, coin_audit_variants.sh): train each
# variant of ``order`` into ``$out/<name>`` with ``common`` flags plus ``rows[<name>]``; a
# finished variant is skipped, a started one resumed.
run_variants() {
  local name dir
  for name in "${order[@]}"; do
    dir="$out/$name"
    if [[ -f "$dir/results.json" ]]; then continue; fi
    local resume=()
    if [[ -d "$dir" ]]; then resume=(--resume); fi
    # shellcheck disable=SC2086
    "$bin" train coin "${common[@]}" ${rows[$name]} --out "$dir" "${resume[@]}"
  done
}
