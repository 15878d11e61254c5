#!/usr/bin/env bash
# Packs what bench/device/gpu-h100.sh and train-h100.sh need on a bare GPU machine (no Node.js, no npm, no network) into .dev/
# (git-ignored), small enough to travel with the working tree: node and dawn.node xz-compressed, the bench
# scripts bundled by esbuild (so neither tsx nor esbuild is needed there), webgpu's JS, and the tfjs bundle
# (bench/out/tfjs, built by any local `npm run bench:gpu`). Run it here, then carry .dev, .gl and bench/out/tfjs.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .dev/node_modules/webgpu/dist/linux-x64
# Unpacked copies (from a local test of a device script) would not fit the carry: only the .xz travel.
rm -f .dev/node .dev/node_modules/webgpu/dist/linux-x64/dawn.node
# Compressing node takes a minute on 2 cores: redo it only when the binary changed.
[ .dev/node.xz -nt "$(command -v node)" ] || xz -T2 -6 -c "$(command -v node)" > .dev/node.xz
cp node_modules/webgpu/package.json node_modules/webgpu/index.js .dev/node_modules/webgpu/
dawn=node_modules/webgpu/dist/linux-x64/dawn.node
[ ".dev/$dawn.xz" -nt "$dawn" ] || xz -T2 -6 -c "$dawn" > ".dev/$dawn.xz"
for script in gpu gpu-check train; do
  npx esbuild "bench/$script.ts" --bundle --platform=node --format=esm --target=node20 \
    --external:webgpu --external:vite --external:playwright-core --external:./gpu-browser.ts --outfile=".dev/$script.mjs" --log-level=warning
done
[ -f bench/out/tfjs/tfjs-bundle.js ] || echo "note: no bench/out/tfjs/tfjs-bundle.js yet: run 'npm run bench:gpu -- --quick' once to build it" >&2
du -sh .dev .gl bench/out/tfjs 2>/dev/null || true
