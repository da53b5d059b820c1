#!/usr/bin/env bash
# The ImageNet-against-scratch study of docs/models.md: the same recipe and steps, two seeds each, RGB+NIR, then
# the RGB model from ImageNet (third, so that both defaults can be shipped before the second seeds end). Each run resumes where it stopped; rerun the script to go on.
# Usage: scripts/imagenet_study.sh DATA NEGATIVES RUNS_DIR [STEPS]
set -euo pipefail
data=$1 negatives=$2 runs=$3 steps=${4:-800}
common=(--arch unet-lite0 --steps "$steps" --val-every 200 --threads 2 --negatives "$negatives" --resume)
run() {
  local name=$1; shift
  if [ -f "$runs/$name/summary.json" ] && grep -q '"finished": true' "$runs/$name/summary.json"; then return; fi
  deadtree train segmenter "$data" --out-dir "$runs/$name" "${common[@]}" "$@"
}
run rgbn-imagenet-s0 --imagenet --seed 0
run rgbn-scratch-s0 --seed 0
run rgb-imagenet-s0 --imagenet --seed 0 --bands R,G,B
run rgbn-imagenet-s1 --imagenet --seed 1
run rgbn-scratch-s1 --seed 1
