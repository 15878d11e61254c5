#!/usr/bin/env bash
# bench:gpu on a bare NVIDIA machine (e.g. a lent H100) that has the driver but no Node.js and no Vulkan loader.
# Run from the repository root, with these carried beside the working tree:
#   .dev/node            a copy of the node binary (cp "$(which node)" .dev/node)
#   node_modules/        at least webgpu (dist/linux-x64), tsx (+ esbuild), vite (+ rolldown), @tensorflow/*
#   .gl/*.deb            libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 (apt-get download …)
#   bench/out/tfjs/      optional: the tfjs bundle built here by a first `npm run bench:gpu` (skips the Vite build)
# Writes the table, the JSON and a log to $OUT (default bench/out). Budget: well under 5 minutes.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
log="$OUT/gpu-h100.log"
exec > >(tee "$log") 2>&1

. bench/device/lib.sh
setup_vulkan || exit 1
unpack_node_and_dawn || exit 1

echo "== $(date -u +%FT%TZ) $(uname -m) node $("$NODE" --version)"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>/dev/null || echo "(no nvidia-smi)"
echo "VK_DRIVER_FILES=$VK_DRIVER_FILES"

# 1) The kernels' reference checks on this GPU (quick: a few hundred small matmuls, all kernel variants).
# SKIP_CHECK=1 skips the full set (a bench-only rerun; on the H100 it takes ~90 s, most of it pipeline
# compilation) but still checks every non-matmul kernel in each row-kernel form (thread / workgroup / subgroup).
check=0
if [ -z "${SKIP_CHECK:-}" ]; then
  timeout 200 $(ts_cmd gpu-check) --backend vulkan --out "$OUT"
  check=$?
else
  timeout 90 $(ts_cmd gpu-check) --backend vulkan --out "$OUT" --only ops
  check=$?
fi
echo "== reference checks exit $check"

# 2) The benchmark: matmul autotune (kernels at 4096³, device fill on few-tile shapes; stored in $OUT/gpu-tuning.json),
#    CLIP shapes, squares, host cost per op, block step (once per row-kernel form), tfjs beside.
# Other processes on the GPU would slow every kernel: list them (the bench's GPU-timed column is the check).
nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv 2>/dev/null || true
timeout 200 $(ts_cmd gpu) --backend vulkan --out "$OUT" --cache "$OUT" --max-seconds 5 --row-modes all
bench=$?
echo "== bench exit $bench"
# 3) The card's own fp32 ceiling (cuBLAS via PyTorch), same machine, same hour.
timeout 60 python3 bench/device/torch-matmul.py "$OUT/torch-matmul.json" || echo "(no torch baseline)"
ls -la "$OUT"
exit $(( check != 0 ? check : bench ))
