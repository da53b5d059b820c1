#!/usr/bin/env bash
# ONNX Runtime's GPU providers on a lent GPU machine (the `device` tool).
#
#   gpu_onnx_session.sh pack       here, on the developer's machine: build the payload into .gpu/p00, p01, p02
#                                  (about 140 MB in 46 MB parts; .gpu/ must be in .git/info/exclude) and
#                                  .gpu/members/models.tar (the ensemble members and the translator)
#   gpu_onnx_session.sh keep DIR   there: copy the payload parts carried in DIR to /tmp/parts (one call per part:
#                                  a call carries at most 64 MiB with the working tree)
#   gpu_onnx_session.sh run        there: unpack the parts and run benchmarks/gpu_onnx.py and the CLI checks;
#                                  results in $OUT
#   gpu_onnx_session.sh pipelines TAR   there: also unpack the models in TAR and time `segment` with the options
#                                  of each line of PLANS (default: --flips, an ensemble with deadtree-rgb, a
#                                  translator)
#
# Nothing can be fetched on the lent machine. The payload: onnxruntime-gpu for CUDA 13 with every architecture
# but sm_90 blanked (scripts/device/prune_fatbin.py), rasterio, shapely and pyproj for Python 3.12 under site/,
# the two RGB+NIR models under models/, 22 validation frames under frames/ and the NAIP tiles the benchmark
# scenes are built from under naip/. The tracked models (170 MB) must not travel: before the calls,
# `git rm -r -q --cached models && echo /models/ >> .git/info/exclude`; after them, `git reset -q models` and
# remove that line again.
set -u
OUT=${OUT:-/tmp/out}
export PYTHONUNBUFFERED=1

# NAME OPTIONS... per line; PLANS replaces these (the models they name must be in TAR)
DEFAULT_PLANS="alone
flips --flips
ensemble --ensemble deadtree-rgb
translator --model east-rgbn --translator west-to-east"

unpack() {
  mkdir -p /tmp/pay "$OUT" && cat /tmp/parts/* | xz -d | tar -x -C /tmp/pay || exit 3
  export PYTHONPATH=/tmp/pay/site:$PWD DEADTREE_MODELS=/tmp/pay/models
  mkdir -p ../shared/data/geotiff && rm -rf ../shared/data/geotiff/naip && cp -r /tmp/pay/naip ../shared/data/geotiff/naip
}
pack() {
  local work=/tmp/deadtree-gpu-pack wheels="--no-deps --only-binary=:all: --python-version 3.12 --implementation cp"
  wheels+=" --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64"
  rm -rf "$work" && mkdir -p "$work/pay/site" "$work/pay/models" "$work/pay/naip" || exit 5
  python3 -m pip download $wheels -d "$work" "onnxruntime-gpu==${ORT_GPU_VERSION:-1.31.1}" || exit 5
  (cd "$work/pay/site" && unzip -q "$work"/onnxruntime_gpu-*.whl) || exit 5
  python3 scripts/device/prune_fatbin.py "$work/pay/site/onnxruntime/capi/libonnxruntime_providers_cuda.so" --keep 90
  python3 -m pip install -q $wheels --target "$work/pay/site" rasterio==1.4.4 shapely==2.2.0 pyproj==3.7.2 affine \
    cligj click-plugins || exit 5
  cp models/deadtree-rgbn.onnx models/deadtree-rgbn-fp16.onnx "$work/pay/models/"
  cp ../shared/data/geotiff/naip/*.tif "$work/pay/naip/"
  python3 - "$work/pay/frames" <<'PY' || exit 5
import shutil, sys
from pathlib import Path
from deadtree.runtime.metadata import read_model_info
from deadtree.training.frames import county_of
groups = set(read_model_info(Path("models/deadtree-rgbn.onnx")).extra["validation_groups"])
source, out = Path("../shared/data/usa_deadtree"), Path(sys.argv[1])
by_state = {}
for mask in sorted((source / "masks").glob("mask_*.png")):
    if county_of(mask.stem[5:]) in groups:
        by_state.setdefault(mask.stem[5:7], []).append(mask.stem[5:])
for ids in by_state.values():  # up to four frames of each state, spread over its list
    for sample in ids[::max(1, len(ids) // 4)][:4]:
        for folder, prefix in (("RGB_images", "RGB_"), ("NIR_images", "NIR_"), ("masks", "mask_")):
            (out / folder).mkdir(parents=True, exist_ok=True)
            shutil.copy(source / folder / f"{prefix}{sample}.png", out / folder)
PY
  find "$work/pay" -name __pycache__ -type d -prune -exec rm -rf {} +
  rm -rf .gpu/p0* .gpu/members && mkdir -p .gpu/members
  tar -cf - -C "$work/pay" site models frames naip | xz -T0 -6 | split -b 46M -d - "$work/part" || exit 5
  for part in "$work"/part*; do mkdir -p ".gpu/p${part##*part}" && mv "$part" ".gpu/p${part##*part}/"; done
  tar -cf .gpu/members/models.tar -C models deadtree-rgb.onnx deadtree-rgb-fp16.onnx east-rgbn.onnx west-to-east.onnx
  ls -la .gpu/*
}

case "${1:-}" in
  pack) pack ;;
  keep)
    mkdir -p /tmp/parts && cp "$2"/* /tmp/parts/ && ls -la /tmp/parts ;;
  run)
    unpack
    python3 -c "import onnxruntime as o; print(o.__version__, o.__file__, o.get_available_providers())"
    for device in auto cuda tensorrt; do  # what a user sees: one line naming the provider, or one clear error
      echo "== segment --device $device"
      python3 -m deadtree.cli segment examples/naip_eureka_2020_0.tif -o "/tmp/eureka-$device.geojson" \
        --device "$device" > "$OUT/cli-$device.txt" 2>&1
      echo "exit $?" >> "$OUT/cli-$device.txt"; cat "$OUT/cli-$device.txt"
    done
    timeout "${BENCH_SECONDS:-400}" python3 benchmarks/gpu_onnx.py --data /tmp/pay/frames --out "$OUT/gpu_onnx.json" \
      2>&1 | tee "$OUT/gpu_onnx.log"
    nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv >> "$OUT/gpu_onnx.log" ;;
  pipelines)
    unpack && tar -xf "$2" -C /tmp/pay/models || exit 4
    scene=$(cd benchmarks && python3 -c "from common import mosaic; print(mosaic('/tmp/m4096.tif', 4096))")
    while read -r name options; do
      echo "== $name: segment 4096 px --device cuda $options"
      for attempt in 1 2; do  # the first pays CUDA's start-up and the session's first shapes
        python3 -m deadtree.cli segment "$scene" -o "/tmp/$name.geojson" --device cuda -q $options 2>&1 \
          | grep -v "tagged alpha" | tail -2
      done
    done <<< "${PLANS:-$DEFAULT_PLANS}" | tee "$OUT/pipelines.txt"
    ;;
  *) sed -n 2,22p "$0"; exit 2 ;;
esac
