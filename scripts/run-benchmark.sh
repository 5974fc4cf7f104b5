#!/usr/bin/env bash
# The main job on the built-in benchmark (no download), from a fresh clone:
#   1. set up .venv if needed;  2. preview the benchmark;
#   3. pretrain Conv-4 with cross-entropy and with CE + CAM-loss (resumes an interrupted run);
#   4. evaluate both on the shipped frozen 5-way 1-shot and 5-shot episodes (ProtoNet, Baseline,
#      Baseline++, logistic regression) and compare them pairwise on the same episodes;
#   5. CAM pictures with localisation, then background reliance (original, foreground-only,
#      background-only, tiled background, mixed-same and mixed-rand backgrounds) on the test and train splits.
# Everything lands in $OUT (default runs/benchmark). About 8 minutes on 2 CPU cores once set up.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
OUT=${OUT:-runs/benchmark}
. scripts/lib.sh
mkdir -p "$OUT"

fc data show --dataset synthetic --split train --image-size 32 --out "$OUT/benchmark-train.png"

for loss in ce camloss; do
    pretrain_once "$loss" "$OUT/$loss" "configs/synthetic-conv4-$loss.yaml"
done

for shots in 1 5; do
    for loss in ce camloss; do
        echo "== eval $loss, 5-way $shots-shot"
        fc eval --checkpoint "$OUT/$loss/best.pt" --ways 5 --shots "$shots" \
            --methods protonet,baseline,baseline++,logreg --json "$OUT/eval-$loss-${shots}shot.json"
    done
    echo "== CE vs CAM-loss, 5-way $shots-shot (same episodes, paired)"
    fc report "$OUT/eval-ce-${shots}shot.json" "$OUT/eval-camloss-${shots}shot.json" \
        --csv "$OUT/report-${shots}shot.csv" | tee "$OUT/report-${shots}shot.md"
done

echo "== CAM pictures and localisation"
fc cam --checkpoint "$OUT/ce/best.pt" --checkpoint "$OUT/camloss/best.pt" \
    --split test --images 256 --pictures 16 --method cam --out "$OUT/cams"

# Background reliance on the novel (test) classes, whose backgrounds are independent of the class (so
# background-only is at chance there by construction), and on the base (train) classes, where the
# benchmark plants a background shortcut. Default analysis: dataset-mean fill, every condition
# (original, foreground, background, bg-tiled, mixed-same, mixed-rand), only the queries modified.
for split in test train; do
    echo "== background reliance, CE vs CAM-loss, $split split (ground-truth masks, 5-way 1-shot)"
    episodes=()
    [ "$split" = train ] && episodes=(--episodes 1000 --seed 0)
    fc ablate --checkpoint "ce=$OUT/ce/best.pt" --checkpoint "camloss=$OUT/camloss/best.pt" \
        --split "$split" --ways 5 --shots 1 "${episodes[@]}" --masks gt --methods protonet,logreg \
        --json "$OUT/ablation-$split.json" --plot "$OUT/ablation-$split.png" | tee "$OUT/ablation-$split.md"
done

echo "Done: results in $OUT (report-*.md, ablation-*.md/png, cams/)"
