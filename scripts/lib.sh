# Shell helpers shared by scripts/run-benchmark.sh and scripts/compare-distill-saol.sh (sourced).

fc() { .venv/bin/fewshot-cam "$@"; }

# pretrain_once NAME RUN_DIR CONFIG [extra pretrain args...]
# Skips a finished run (RUN_DIR/done), resumes an interrupted one (RUN_DIR/last.pt), else starts it.
pretrain_once() {
    local name=$1 run=$2 config=$3
    shift 3
    if [ -f "$run/done" ]; then
        echo "== pretrain $name: already done ($run)"
        return 0
    fi
    local resume=()
    [ -f "$run/last.pt" ] && resume=(--resume)
    echo "== pretrain $name -> $run"
    fc pretrain --config "$config" "$@" --out "$run" "${resume[@]}"
    touch "$run/done"
}
