// The two CPU WebGPU adapters the kernel tests run on: Dawn's GL ES backend over Mesa's llvmpipe (the
// compatibility adapter) and SwiftShader (a core Vulkan adapter), opened for a test file and destroyed after it.
import { after, before } from 'node:test';
import { Engine } from '../../src/core/gpu/engine.ts';
import { openDawn } from '../../server/gpu/dawn.ts';

export interface CpuEngines {
  gl: Engine;
  swiftshader: Engine;
}

/** Registers the file's before/after hooks; the engines are there once the tests run. */
export function cpuEngines(): CpuEngines {
  const engines = {} as CpuEngines;
  before(async () => {
    engines.gl = new Engine(await openDawn({ backend: 'opengles' }));
    engines.swiftshader = new Engine(await openDawn({ backend: 'swiftshader' }));
  });
  after(() => {
    engines.gl?.destroy();
    engines.swiftshader?.destroy();
  });
  return engines;
}
