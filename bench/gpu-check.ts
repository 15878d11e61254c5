/**
 * The engine's reference checks on whatever device Dawn opens (for a real GPU, where the unit tests do not run):
 *   node --import tsx bench/gpu-check.ts [--backend auto|vulkan|swiftshader|opengles] [--out DIR] [--only ops]
 * Exits 1 if any check fails; writes DIR/gpu-check-<backend>.json. `--only ops` checks every non-matmul kernel in
 * every row-kernel form the device has, and the fused matmul epilogues training uses (bias + GELU, residual
 * accumulate, GELU backward) with the device's planned kernels and split-K (a few seconds: the quick check before a
 * benchmark-only run).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { openDawn, type DawnBackend } from '../server/gpu/dawn.ts';
import { describeGpu } from '../src/core/gpu/device.ts';
import { Engine } from '../src/core/gpu/engine.ts';
import { allChecks, checkMatmulEpilogues, checkOps, type CheckResult } from '../src/core/gpu/checks.ts';
import { TILED_DEFAULT } from '../src/core/gpu/kernels/matmul.ts';
import { rowKernelMode, rowKernelModes } from '../src/core/gpu/kernels/ops.ts';

const { values: args } = parseArgs({
  options: { backend: { type: 'string', default: 'auto' }, out: { type: 'string', default: resolve(import.meta.dirname, 'out') }, only: { type: 'string' } },
});
const gpu = await openDawn({ backend: args.backend as DawnBackend });
const engine = new Engine(gpu);
console.log(`device: ${describeGpu(engine.info)}`);
console.log(`subgroup matrix configs: ${JSON.stringify(engine.info.subgroupMatrixConfigs)}`);
console.log(`row kernels: ${rowKernelModes(engine).join(', ')} (default ${rowKernelMode(engine)})`);
const started = performance.now();
let results: CheckResult[];
if (args.only === 'ops') {
  results = [];
  for (const mode of rowKernelModes(engine)) results.push(...(await checkOps(engine, 11, mode)));
  results.push(...(await checkMatmulEpilogues(engine)));
  if (!engine.info.isCpu) results.push(...(await checkMatmulEpilogues(engine, TILED_DEFAULT, 6, 3)));
} else {
  results = await allChecks(engine);
}
const failed = results.filter((r) => !r.ok);
for (const r of failed) console.log(`FAIL ${r.name}: error ${r.maxError.toFixed(3)}× tolerance`);
console.log(`${results.length - failed.length}/${results.length} checks passed in ${((performance.now() - started) / 1000).toFixed(1)} s`);
mkdirSync(args.out!, { recursive: true });
writeFileSync(join(args.out!, `gpu-check-${gpu.backend}${args.only === 'ops' ? '-ops' : ''}.json`), JSON.stringify({ device: describeGpu(engine.info), info: engine.info, results }, null, 2));
engine.destroy();
process.exit(failed.length ? 1 : 0);
