#!/usr/bin/env bash
# ONNX Runtime's GPU providers on a lent GPU machine (the `device` tool), from the repository root there.
#
#   gpu_onnx_session.sh keep DIR   copy the payload parts carried in DIR to /tmp/parts (one call per part: a call
#                                  carries at most 64 MiB, the payload is about 140 MB)
#   gpu_onnx_session.sh run        unpack the parts and run benchmarks/gpu_onnx.py and the CLI checks; results in $OUT
#   gpu_onnx_session.sh pipelines TAR   also unpack the models in TAR and time `segment` with the options of
#                                  each line of PLANS (default: --flips, an ensemble with deadtree-rgb, a translator)
#
# The payload (built on a developer's machine; nothing can be fetched on the lent one): onnxruntime-gpu for
# CUDA 13 with every architecture but sm_90 blanked (scripts/device/prune_fatbin.py), rasterio, shapely and
# pyproj for Python 3.12 under site/, the two models under models/, validation frames under frames/ and the
# NAIP tiles the benchmark scenes are built from under naip/; tar | xz | split -b 46M.
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
case "${1:-}" in
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
  *) sed -n 2,13p "$0"; exit 2 ;;
esac
