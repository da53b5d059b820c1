#!/usr/bin/env bash
# Training and GPU checks on a lent GPU machine (the `device` tool), from the repository root there.
#
#   gpu_session.sh unpack TAR...  unpack frame chunks (scripts/device/pack_frames.py) into /tmp/usa_deadtree
#   gpu_session.sh smoke          a few steps of each trainer and the GPU benchmark on what is unpacked
#   gpu_session.sh train          the segmenters and translators side by side on one GPU, each fitted to
#                                 FIT_MINUTES (default 5.75), then slim checkpoints, logs and GPU figures to $OUT
#                                 (SEGMENTERS and TRANSLATORS choose the runs; see their defaults below)
#
# The machine has torch and CUDA but no registry: the wheels deadtree needs for training travel in .whl/.
set -u
DATA=../shared/data/usa_deadtree   # the path the model cards show, as on a developer's checkout
RUNS=runs/gpu
OUT=${OUT:-/tmp/out}
DEVICE=${DEVICE:-cuda}
FIT=${FIT_MINUTES:-5.75}
# What `train` runs side by side: segmenters as NAME:BANDS:ARCH[:STATES[:EXTRA]] (EXTRA: that run's own options,
# '+' between them, e.g. --weight-decay=0.05+--augmentation=strong), translators by name (ada, cut,
# ada-task[@WEIGHT] with TASK_SEGMENTER). E.g. SEGMENTERS="east-r18d4:R,G,B,NIR:unet-r18-d4:AR,MO,TX" TRANSLATORS=""
# (an empty list runs none of that kind; unset gives the defaults). GPU_BENCH=0 skips the torch benchmark;
# SEGMENTER_ARGS and TRANSLATOR_ARGS are appended to every run of that kind (a CPU rehearsal makes them tiny).
# Distillation: EXTRA --teacher=models/checkpoints/deadtree-rgbn-0.2.0.pt+--teacher=... (the teachers' 24 MB of
# checkpoints must travel).
#
# A call carries at most 64 MiB, and the tracked tree is far larger (models/, docs/). As done on 2026-11-27
# (deadtree-rgbn 0.6.0), in about 10 device-minutes: here, `git rm -r -q --cached models docs examples` and
# `printf '/models/\n/docs/\n/examples/\n' >> .git/info/exclude` (the code then weighs about 1 MB); pack the
# frames with pack_frames.py --chunk-mb 61,61 (three tars); wheels for segmentation-models-pytorch,
# albumentations, albucore, pydantic(-core), annotated-types, typing-inspection, stringzilla and simsimd
# (Python 3.12) in .whl/. Then three calls back to back (a machine stays warm 30 s): `unpack` with carry
# [frames_0.tar]; `unpack` with carry [frames_1.tar]; `unpack` frames_2.tar && `train`, with carry
# [frames_2.tar, .whl, the three teachers' checkpoints]. Afterwards `git reset -q` and drop those exclude lines.
SEGMENTERS=${SEGMENTERS-rgbn-r18d4:R,G,B,NIR:unet-r18-d4 rgb-r18d4:R,G,B:unet-r18-d4 rgbn-regnetx004:R,G,B,NIR:unet-regnetx004}
TRANSLATORS=${TRANSLATORS-ada cut}
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
mkdir -p "$OUT" "$RUNS"
[ -e "$DATA/masks" ] || [ "${1:-}" = unpack ] || DATA=/tmp/usa_deadtree  # where ../shared cannot be made

site() {
  python3 -c "import segmentation_models_pytorch, albumentations" 2>/dev/null && return
  if [ ! -d /tmp/site/segmentation_models_pytorch ] && [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
  fi
  [ -d /tmp/site ] && export PYTHONPATH=/tmp/site:$PWD || export PYTHONPATH=$PWD
}

unpack() {
  mkdir -p /tmp/usa_deadtree
  if mkdir -p ../shared/data 2>/dev/null; then [ -e "$DATA" ] || ln -s /tmp/usa_deadtree "$DATA"; fi
  for tar in "$@"; do tar -xf "$tar" -C /tmp/usa_deadtree || exit 4; done
  echo "frames unpacked: $(ls /tmp/usa_deadtree/masks | wc -l)"
}

# A run stops on its own at 110% of FIT; this hard limit adds RUN_SLACK_S (default 90 s) for loading frames and
# teachers, so that a run that overshoots is cut off while the call still has time to slim and return it.
RUN_LIMIT=$(python3 -c "print(int(float('$FIT') * 66 + ${RUN_SLACK_S:-90}))")

segmenter() {  # NAME ARGS...: one segmenter run, log in $RUNS/NAME.log
  local name=$1; shift
  timeout "$RUN_LIMIT" python3 -m deadtree.cli train segmenter "$DATA" --out-dir "$RUNS/$name" --device "$DEVICE" \
    --threads 2 "$@" ${SEGMENTER_ARGS:-} > "$RUNS/$name.log" 2>&1
  echo "$name: exit $? $(tail -c 200 "$RUNS/$name.log" | tr '\r' '\n' | tail -1)"
}

translator() {  # NAME ARGS...
  local name=$1; shift
  python3 -m deadtree.cli train translator --source "$DATA" --target "$DATA" --source-filter wa,or,nm \
    --target-filter ar,mo,tx --out-dir "$RUNS/$name" --device "$DEVICE" --threads 2 "$@" ${TRANSLATOR_ARGS:-} \
    > "$RUNS/$name.log" 2>&1
  echo "$name: exit $? $(tail -c 200 "$RUNS/$name.log" | tr '\r' '\n' | tail -1)"
}

slim() {  # CHECKPOINT OUTFILE
  python3 -c "import sys; from deadtree.training.slim import write_slim_checkpoint as w; w(sys.argv[1], sys.argv[2])" "$1" "$2" \
    && echo "$2: $(du -h "$2" | cut -f1)"
}

run_name() {  # a translator plan as a folder name: ada-task@5 -> ada-task-w5
  echo "${1/@/-w}"
}

collect_logs() {
  for log in "$RUNS"/*.log; do tr '\r' '\n' < "$log" | grep -v "^$" | tail -n 400 > "$log.tail"; done
  tar -czf "$OUT/logs.tgz" --exclude='*.pt' --exclude='*.tmp' --exclude='*.log' --exclude='*.npz' "$RUNS" 2>/dev/null
}

gpu_facts() {
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  python3 -c "import onnxruntime as o; print('onnxruntime', o.__version__, o.get_available_providers())" 2>&1 | tail -1
  df -h /dev/shm /tmp | tail -2; nproc; free -g | head -2
}

case "${1:-}" in
  unpack) shift; unpack "$@" ;;
  smoke)
    site; gpu_facts | tee "$OUT/gpu.txt"
    start=$(date +%s)
    segmenter smoke-seg --bands R,G,B,NIR --arch unet-r18-d4 --steps "${SMOKE_STEPS:-40}" --val-every "${SMOKE_STEPS:-40}" --batch-size 32 --workers 3 &
    translator smoke-ada --config paper --epochs 1 --decay-epochs 1 --steps-per-epoch "${SMOKE_STEPS:-10}" &
    wait
    echo "smoke took $(( $(date +%s) - start )) s"
    grep -ao "[0-9.]*s/step\|[0-9.]*step/s" "$RUNS/smoke-seg.log" | tail -1; grep -ao "[0-9.]*s/step\|[0-9.]*step/s" "$RUNS/smoke-ada.log" | tail -1
    slim "$RUNS/smoke-seg/best.pt" /tmp/smoke-seg.pt && slim "$RUNS/smoke-ada/last.pt" /tmp/smoke-ada.pt
    timeout 60 python3 benchmarks/gpu_torch.py /tmp/smoke-seg.pt --data "$DATA" --out "$OUT/gpu_smoke.json" \
      --device "$DEVICE" --seconds 1
    collect_logs
    ;;
  train)
    site; gpu_facts > "$OUT/gpu.txt"
    n=$(ls /tmp/usa_deadtree/masks 2>/dev/null | wc -l)
    [ "$n" -ge 375 ] || { echo "only $n frames unpacked: unpack every chunk first"; exit 5; }
    start=$(date +%s)
    common=(--batch-size 32 --crop 256 --lr 2e-3 --val-every 0 --fit-minutes "$FIT" --workers "${WORKERS:-3}")
    for plan in $SEGMENTERS; do  # NAME:BANDS:ARCH[:STATES[:EXTRA]]
      IFS=: read -r name bands arch states extra <<< "$plan"
      segmenter "$name" --bands "$bands" --arch "$arch" ${states:+--states "$states"} "${common[@]}" ${extra//+/ } &
    done
    for name in $TRANSLATORS; do
      case $name in
        ada) translator ada --config paper --attention --freq-nce --fit-minutes "$FIT" & ;;
        cut) translator cut --config paper --no-attention --no-freq-nce --fit-minutes "$FIT" & ;;
        ada-task*)  # needs TASK_SEGMENTER: an east-only segmenter's checkpoint (e.g. from an earlier phase)
          weight=${name#ada-task}; weight=${weight#@}
          if [ -f "${TASK_SEGMENTER:-}" ]; then
            translator "$(run_name "$name")" --config paper --attention --freq-nce --task-segmenter "$TASK_SEGMENTER" \
              --task-weight "${weight:-1}" --fit-minutes "$FIT" &
          else echo "$name skipped: TASK_SEGMENTER is not a file"; fi ;;
      esac
    done
    wait
    echo "training took $(( $(date +%s) - start )) s"
    for plan in $SEGMENTERS; do slim "$RUNS/${plan%%:*}/best.pt" "$OUT/${plan%%:*}.pt"; done
    for run in $TRANSLATORS; do run=$(run_name "$run"); slim "$RUNS/$run/last.pt" "$OUT/$run.pt"; done
    collect_logs
    first=${SEGMENTERS%% *}
    [ -n "$first" ] && [ "${GPU_BENCH:-1}" != 0 ] && timeout 90 python3 benchmarks/gpu_torch.py "$OUT/${first%%:*}.pt" --data "$DATA" --out "$OUT/gpu_torch.json" --device "$DEVICE"
    ls -la "$OUT"
    ;;
  *) sed -n 2,9p "$0"; exit 2 ;;
esac
