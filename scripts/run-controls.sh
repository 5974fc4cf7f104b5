#!/usr/bin/env bash
# Planted-truth controls of the background analysis, on variants of the built-in benchmark:
#   1. pretrain Conv-4 (CE, as configs/synthetic-conv4-ce.yaml but 10 epochs) as a background learner
#      (configs/synthetic-conv4-control-bg.yaml: objects carry no class information, every class on its
#      own background, in train and test) and as a foreground learner
#      (configs/synthetic-conv4-control-fg.yaml: random backgrounds in train and test);
#   2. ablate each on its test split with the default analysis (the shipped 2000 5-way 1-shot episodes).
# The background learner must come out with background-only ~ original, foreground-only ~ chance and a
# background-following rate near 100%; the foreground learner the other way round.
# Everything lands in $OUT (default runs/benchmark). A few minutes on 2 quiet CPU cores once set up.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
OUT=${OUT:-runs/benchmark}
. scripts/lib.sh
mkdir -p "$OUT"

for kind in bg fg; do
    pretrain_once "control-$kind" "$OUT/control-$kind" "configs/synthetic-conv4-control-$kind.yaml"
done
for kind in bg fg; do
    echo "== background reliance of the $kind control, its test split (default analysis, 5-way 1-shot)"
    fc ablate --checkpoint "control-$kind=$OUT/control-$kind/best.pt" --ways 5 --shots 1 --masks gt \
        --methods protonet,logreg --json "$OUT/ablation-control-$kind.json" --plot "$OUT/ablation-control-$kind.png" \
        | tee "$OUT/ablation-control-$kind.md"
done
echo "Done: results in $OUT (ablation-control-*.md/png/json)"
