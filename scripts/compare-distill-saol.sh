#!/usr/bin/env bash
# After the main job (scripts/run-benchmark.sh): CAAM-CAM matching distillation and the SAOL head
# on the built-in benchmark, compared with its CE and CE + CAM-loss models.
#   1. pretrain Conv-4 with CE + CCM distillation from the CAM-loss model ($OUT/camloss/best.pt)
#      and Conv-4 with a SAOL head (resumes an interrupted run, skips a finished one);
#   2. evaluate ce, camloss, ccm, saol on the shipped frozen 5-way 1-shot and 5-shot episodes
#      (ProtoNet, logistic regression) and compare each with CE pairwise on the same episodes;
#   3. background reliance of all four (ground-truth masks, 5-way 1-shot).
# Everything lands in $OUT (default runs/benchmark). About 12 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/benchmark}
. scripts/lib.sh

for need in ce camloss; do
    if [ ! -f "$OUT/$need/best.pt" ]; then
        echo "error: $OUT/$need/best.pt is missing; run scripts/run-benchmark.sh first" >&2
        exit 2
    fi
done

pretrain_once ccm "$OUT/ccm" configs/synthetic-conv4-ccm.yaml --teacher "$OUT/camloss/best.pt"
pretrain_once saol "$OUT/saol" configs/synthetic-conv4-saol.yaml

MODELS=(ce camloss ccm saol)
for shots in 1 5; do
    files=()
    for name in "${MODELS[@]}"; do
        json="$OUT/eval-$name-${shots}shot.json"
        if [ ! -f "$json" ]; then  # the main job already wrote ce and camloss (with more methods)
            echo "== eval $name, 5-way $shots-shot"
            fc eval --checkpoint "$OUT/$name/best.pt" --ways 5 --shots "$shots" \
                --methods protonet,logreg --json "$json"
        fi
        files+=("$json")
    done
    echo "== CE vs CAM-loss vs CCM vs SAOL, 5-way $shots-shot (same episodes, paired with CE)"
    fc report "${files[@]}" --baseline "$OUT/eval-ce-${shots}shot.json" \
        --csv "$OUT/report-distill-saol-${shots}shot.csv" | tee "$OUT/report-distill-saol-${shots}shot.md"
done

echo "== background reliance, CE vs CAM-loss vs CCM vs SAOL (ground-truth masks, 5-way 1-shot)"
models=()
for name in "${MODELS[@]}"; do models+=(--checkpoint "$name=$OUT/$name/best.pt"); done
fc ablate "${models[@]}" \
    --ways 5 --shots 1 --masks gt --methods protonet,logreg \
    --json "$OUT/ablation-distill-saol.json" --plot "$OUT/ablation-distill-saol.png" | tee "$OUT/ablation-distill-saol.md"

echo "== CAM pictures and localisation (SAOL: its spatial logits)"
fc cam --checkpoint "$OUT/ce/best.pt" --checkpoint "$OUT/camloss/best.pt" --checkpoint "$OUT/ccm/best.pt" \
    --checkpoint "$OUT/saol/best.pt" --split test --images 256 --pictures 16 --method cam --out "$OUT/cams-distill-saol"

echo "Done: results in $OUT (report-distill-saol-*.md, ablation-distill-saol.md/png, cams-distill-saol/)"
