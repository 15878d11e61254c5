// src/core runs in browser workers and in Node alike: it may not reach for Node built-ins or the DOM.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';

const CORE = join(import.meta.dirname, '../../src/core');

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sources(path) : /\.(ts|js|svelte)$/.test(name) ? [path] : [];
  });
}

const NODE_BUILTINS = ['fs', 'path', 'os', 'child_process', 'worker_threads', 'crypto', 'stream', 'zlib', 'url', 'util', 'http', 'https', 'net', 'buffer', 'process', 'events', 'readline'];
const IMPORT = /(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)|require\(\s*['"]([^'"]+)['"]\s*\)/g;

test('src/core imports no node: modules', () => {
  const offenders: string[] = [];
  for (const file of sources(CORE)) {
    for (const m of readFileSync(file, 'utf8').matchAll(IMPORT)) {
      const spec = m[1] ?? m[2] ?? m[3]!;
      if (spec.startsWith('node:') || NODE_BUILTINS.includes(spec.split('/')[0]!) || spec === 'webgpu' || spec === 'sharp') {
        offenders.push(`${relative(CORE, file)} imports ${spec}`);
      }
    }
  }
  assert.deepEqual(offenders, []);
});

test('src/core uses no DOM globals', () => {
  const offenders: string[] = [];
  for (const file of sources(CORE)) {
    const code = readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
    for (const m of code.matchAll(/\b(document|window|localStorage|HTMLElement|HTMLCanvasElement)\b(?!['"])/g)) {
      offenders.push(`${relative(CORE, file)} uses ${m[1]}`);
    }
    if (/\bprocess\.(env|argv|exit|cwd)/.test(code)) offenders.push(`${relative(CORE, file)} uses process`);
    if (/\bBuffer\.(from|alloc|concat)/.test(code)) offenders.push(`${relative(CORE, file)} uses Buffer`);
  }
  assert.deepEqual(offenders, []);
});

test('the boundary check sees an offending import', () => {
  // Guard against a regex that silently matches nothing.
  const sample = `import { readFile } from 'node:fs';\nconst z = await import("zlib");`;
  const specs = [...sample.matchAll(IMPORT)].map((m) => m[1] ?? m[2]);
  assert.deepEqual(specs, ['node:fs', 'zlib']);
});
