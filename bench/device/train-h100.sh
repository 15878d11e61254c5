#!/usr/bin/env bash
# Training speed on a bare NVIDIA machine (e.g. a lent H100) that has the driver but no Node.js and no Vulkan loader:
#  1) the reference checks of every non-matmul kernel in every row-kernel form (the tiled attention included) and of
#     the fused matmul epilogues with the device's own kernels;
#  2) unless $OUT already holds one for the adapter, a matmul tuning on ViT-B/32's training shapes at batch 256
#     (bench/gpu.ts --tune-shapes, ≤ 45 s), stored in $OUT/gpu-tuning.json;
#  3) bench:train for ViT-B/32 at batch 256 and gpu-small at 512 with that tuning: phases per step (upload, record,
#     wait) of pipelined steps as `dcw train` runs them (uint8 upload, fused ops, chunked submits), then the same
#     steps with each of those switched back, the built-in tuning, and the old path, all in one process
#     (--compare-step); the per-row attention kernels beside; a per-kernel GPU profile of one step; and the same
#     steps and profile with the kernels before round 4 (head attention in both passes, scalar column sums with a
#     finishing pass per sum: --compare-kernels), printed as "GPU ms per step, previous kernels → now" for
#     attention, attention backward, bias gradients (column sums), layernorm backward and embeddingBackward.
# Carry what prepare-carry.sh packs (.dev: node, dawn.node, the bundled bench scripts) and .gl/*.deb (the Vulkan
# loader and glvnd, as for gpu-h100.sh). Writes train-h100.log, gpu-check-<backend>-ops.json, gpu-tuning.json and
# train-<backend>.json to $OUT (default bench/out). Budget: under 4 minutes (limits 60 + 60 + 150 (+ 60) s; about
# 2–3 minutes expected on an H100).
#
# A CPU test of this script (tiny shapes, no Vulkan setup; minutes on 2 cores):
#   bash bench/device/prepare-carry.sh && BACKEND=swiftshader TINY=1 OUT=/tmp/train-h100 bash bench/device/train-h100.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-bench/out}
BACKEND=${BACKEND:-vulkan}
mkdir -p "$OUT"
exec > >(tee "$OUT/train-h100.log") 2>&1
started=$(date +%s)

. bench/device/lib.sh
if [ "$BACKEND" = vulkan ]; then setup_vulkan || exit 1; fi
unpack_node_and_dawn || exit 1

echo "== $(date -u +%FT%TZ) $(uname -m) node $("$NODE" --version) backend $BACKEND${TINY:+ (tiny shapes)}"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>/dev/null || echo "(no nvidia-smi)"

# 1) Every non-matmul kernel against the float64 reference, in each row-kernel form (thread / workgroup / subgroup),
#    with the per-(batch, head) and the tiled attention at CLIP's shapes (T 50, 77, 65, 32, heads of 64, causal and
#    not), each also planned for less workgroup memory (20 and 16 KiB) and each pass with either kernel set, both
#    embedding-gradient forms, and both column-sum forms (vec4 and scalar).
# (~20 s on an H100, most of it pipeline compilation; minutes on SwiftShader, hence the longer TINY limit.)
limit=${CHECK_TIMEOUT:-60}
[ -n "${TINY:-}" ] && limit=${CHECK_TIMEOUT:-900}
timeout "$limit" $(ts_cmd gpu-check) --backend "$BACKEND" --out "$OUT" --only ops
check=$?
echo "== reference checks exit $check ($(( $(date +%s) - started )) s)"

# 2) The matmul tuning for the big shapes (skipped when $OUT holds one for this adapter). TINY: batch 1, ~20 s.
if [ -n "${TINY:-}" ]; then tune=(--batch 1 --max-seconds 20); else tune=(--batch 256 --max-seconds 45); fi
timeout 60 $(ts_cmd gpu) --backend "$BACKEND" --tune-shapes vit-b-32 --if-missing --cache "$OUT" --no-tfjs "${tune[@]}" | grep -E '^tune:|tune .*: [0-9.]+ ms over|stored|not tuning|time is up'
echo "== matmul tuning exit ${PIPESTATUS[0]} ($(( $(date +%s) - started )) s)"

# 3) Training steps. --quick-init: ViT-B/32's 151M open_clip-initialised weights take ~30 s to draw in JS and do
#    not change the speed. TINY: one-layer models at batch 2 with the GPU row-kernel forms, to test this script.
nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv 2>/dev/null || true
if [ -n "${TINY:-}" ]; then size=(--tiny --row-kernels workgroup --steps 1); else size=(--vit-batch 256 --steps 5); fi
timeout 150 $(ts_cmd train) --gpu "$BACKEND" --only ViT-B-32,gpu-small "${size[@]}" --profile --compare-kernels --compare-attention --compare-step --quick-init --tuning "$OUT" --out "$OUT"
train=$?
echo "== bench:train exit $train ($(( $(date +%s) - started )) s)"
if [ "$train" -ne 0 ]; then
  # Insurance for a first run on new code: the old path (f32 upload, unfused, one submit, serial, per-row attention).
  timeout 60 $(ts_cmd train) --gpu "$BACKEND" --only ViT-B-32,gpu-small "${size[@]}" --profile --quick-init --attention rows \
    --upload f32 --no-fuse --submit-every 100000 --serial --tag old --out "$OUT"
  echo "== bench:train old path exit $? ($(( $(date +%s) - started )) s)"
fi
ls -la "$OUT"
exit $(( check != 0 ? check : train ))
