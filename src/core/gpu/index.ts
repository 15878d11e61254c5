/**
 * The WebGPU engine: one set of WGSL kernels for the browser (navigator.gpu, also in workers) and for Node
 * (Dawn through server/gpu/dawn.ts).
 *
 *   device.ts      requestGpu(gpu) → adapter/device with the adapter's limits, features, loss reporting
 *   engine.ts      Engine: tensors, buffer pool, pipeline + bind-group caches, uniform arena, batched submission, read()
 *   kernels/       matmul (register-blocked for CPU back ends, workgroup-tiled + split-K for GPUs) and every other op
 *                  (row kernels one thread per row on CPU adapters, one workgroup per row with subgroup or
 *                  workgroup-memory reductions on GPUs: ops.rowKernelMode)
 *   tuning.ts      per-device matmul tuning (kernels, device fill) as JSON data, keyed by adapter
 *   reference.ts   float64 CPU reference of every op, forward and backward
 *   backend.ts     the kernel set on the GPU (GpuBackend) and on the reference (RefBackend)
 *   nn.ts          Tape (autograd), Param, fused AdamW step
 *   transformer.ts CLIP's residual attention block and a tiny LM built from it
 *   checks.ts      reference checks runnable anywhere (tests, device self-test)
 * How it works and what it guarantees: docs/engine.md.
 */
export { requestGpu, describeGpu, NoAdapterError, USEFUL_FEATURES, type GpuHandle, type GpuInfo, type RequestGpuOptions } from './device.ts';
export { Engine, Tensor, GpuError, paramStruct, bindingKinds, type DType, type Kernel, type ParamLayout } from './engine.ts';
export { matmul, planMatmul, choosePlan, chooseMatmulConfig, setMatmulConfig, setMatmulTuning, getMatmulTuning, configName, planName, type MatmulConfig, type MatmulOptions, type MatmulPlan } from './kernels/matmul.ts';
export { DEFAULT_GPU_TUNING, tuningKey, findTuning, withTuning, isTuning, type MatmulTuning, type TuningFile } from './tuning.ts';
export * as ops from './kernels/ops.ts';
export * as reference from './reference.ts';
export { GpuBackend, RefBackend, RefTensor, type Backend, type BackendTensor, type Tokens } from './backend.ts';
export { Tape, Var, Param, adamwStep, type AdamWConfig } from './nn.ts';
export { transformerBlock, blockParams, blockParamList, TinyLm, trainTinyLm, copyTaskBatch, type BlockParams, type BlockShape, type TinyLmConfig } from './transformer.ts';
export { checkMatmul, checkOps, allChecks, compare, F32_TOLERANCE, type CheckResult } from './checks.ts';
