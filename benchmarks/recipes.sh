#!/usr/bin/env bash
# Method vs recipe at the study's setting (digits-uncond, 4,000 steps): flow matching and shortcut, each
# with (grid, mse) (their own recipe), (logit-normal, mse) and (logit-normal, adaptive) (MeanFlow's),
# one run each; FD in digits-CNN features at 1, 4 and 128 steps over 2,000 samples (the study's protocol).
#   bash benchmarks/recipes.sh [OUT]        # OUT defaults to runs/recipes; reruns skip finished stages
# Results: OUT/NAME-eval/metrics.json per run, wall times in OUT/times.txt (benchmarks/RESULTS.md).
# The runs recorded there trained shortcut with the online network as target, which the preset then set (it
# now leaves shortcut's own, the EMA network): target_network=online keeps them (flow matching ignores it).
set -euo pipefail
cd "$(dirname "$0")/.."
SM=${SM:-.venv/bin/shortcut}
OUT=${1:-runs/recipes}
mkdir -p "$OUT"
for obj in flow shortcut; do
  for recipe in "grid mse" "logit-normal mse" "logit-normal adaptive"; do
    set -- $recipe
    name="$obj-$1-$2"
    start=$(date +%s)
    $SM train --preset digits-uncond --objective "$obj" --out "$OUT/$name" --quiet \
      eval_every=0 logger=none target_network=online "time_sampler=$1" "loss_weight=$2"
    mid=$(date +%s)
    [ -f "$OUT/$name-eval/metrics.json" ] || \
      $SM eval --ckpt "$OUT/$name" --steps 1,4,128 --num 2000 --metric fd-digits --quiet --out "$OUT/$name-eval"
    end=$(date +%s)
    echo "$name train $((mid - start)) s eval $((end - mid)) s" >> "$OUT/times.txt"
  done
done
