#!/usr/bin/env bash
# Fine-tune the shipped defaults with hard negatives (town tiles, Palm Springs kept out): the same network and
# county split, started from the shipped weights, a short schedule at a low learning rate. docs/models.md
# reports the outcome. Each run resumes where it stopped; rerun the script to go on.
# Usage: scripts/negatives_finetune.sh DATA NEGATIVES RUNS_DIR [STEPS]
set -euo pipefail
data=$1 negatives=$2 runs=$3 steps=${4:-600}
here=$(cd "$(dirname "$0")/.." && pwd)
common=(--steps "$steps" --val-every 200 --threads 2 --lr 3e-4 --negatives "$negatives" --resume)
run() {
  local name=$1; shift
  if [ -f "$runs/$name/summary.json" ] && grep -q '"finished": true' "$runs/$name/summary.json"; then return; fi
  deadtree train segmenter "$data" --out-dir "$runs/$name" "${common[@]}" "$@"
}
ckpt="$here/models/checkpoints"
run rgbn-0.6.0-negatives --arch unet-r10k3-d4-h2r --init-from "$ckpt/deadtree-rgbn-0.6.0.pt"
# the same with 0.6.0's own distillation targets kept for the forest frames, and fewer town crops
run rgbn-0.6.0-negatives-distilled --arch unet-r10k3-d4-h2r --init-from "$ckpt/deadtree-rgbn-0.6.0.pt" \
  --negative-share 0.15 --teacher "$ckpt/deadtree-rgbn-0.2.0.pt" --teacher "$ckpt/deadtree-rgb-0.2.0.pt" \
  --teacher "$ckpt/deadtree-rgbn-effb0-0.3.0.pt" --distill-weight 0.8
run rgb-0.2.0-negatives --arch unet-r18-d4 --bands R,G,B --init-from "$here/models/checkpoints/deadtree-rgb-0.2.0.pt"
