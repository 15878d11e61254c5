#!/usr/bin/env node
// The one test command (`npm test`): unit tests in Node, then browser tests in Debian's headless Chromium.
// Browser tests are never skipped silently: without Chromium we install it (as root) or stop with an instruction.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const args = process.argv.slice(2);
const only = args.find((a) => a === '--unit' || a === '--browser');
const filters = args.filter((a) => !a.startsWith('--'));
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

function testFiles(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...testFiles(path));
    else if (name.endsWith('.test.ts')) out.push(relative(root, path));
  }
  return out.sort();
}

function ensureChromium() {
  if (existsSync(CHROMIUM)) return;
  if (process.getuid?.() === 0) {
    console.log(`${CHROMIUM} is missing: installing Debian's chromium (apt-get)…`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const update = spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
    const install = spawnSync('apt-get', ['install', '-y', '-qq', 'chromium', 'libegl1', 'libegl-mesa0', 'libgl1-mesa-dri', 'libgles2'], { stdio: 'inherit', env });
    if (update.status === 0 && install.status === 0 && existsSync(CHROMIUM)) return;
  }
  console.error(`browser tests need Chromium at ${CHROMIUM}: run 'sudo apt-get install chromium' (or set CHROMIUM_PATH), then npm test again`);
  process.exit(1);
}

const groups = [];
if (only !== '--browser') groups.push({ name: 'unit', files: testFiles(join(root, 'test/unit')) });
if (only !== '--unit') groups.push({ name: 'browser', files: testFiles(join(root, 'test/browser')) });

let failed = false;
// Type errors fail the run before any test: strict TypeScript is part of the contract.
if (!args.includes('--no-typecheck') && !filters.length) {
  console.log('== typecheck (tsc --noEmit, svelte-check)');
  const tsc = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '--noEmit', '-p', 'tsconfig.json'], { cwd: root, stdio: 'inherit' });
  const svelte = tsc.status === 0 && spawnSync(process.execPath, [join(root, 'node_modules/svelte-check/bin/svelte-check'), '--tsconfig', './tsconfig.json', '--threshold', 'error', '--output', 'human'], { cwd: root, stdio: 'inherit' });
  if (tsc.status !== 0 || svelte.status !== 0) {
    console.log('\ntotal: 0 passed, 1 failed, 0 skipped');
    process.exit(1);
  }
}
const totals = { passed: 0, failed: 0, skipped: 0 };
const tapDir = mkdtempSync(join(tmpdir(), 'dcw-test-'));
for (const group of groups) {
  let files = group.files;
  if (filters.length) files = files.filter((f) => filters.some((p) => f.includes(p)));
  if (!files.length) continue;
  if (group.name === 'browser') ensureChromium();
  console.log(`\n== ${group.name} tests (${files.length} files)`);
  const tap = join(tapDir, `${group.name}.tap`);
  const run = spawnSync(
    process.execPath,
    [
      '--import', 'tsx', '--test', '--test-concurrency=1', '--test-timeout=600000',
      '--test-reporter=spec', '--test-reporter-destination=stdout',
      '--test-reporter=tap', `--test-reporter-destination=${tap}`,
      ...files,
    ],
    // Dawn in Node: the OpenGL ES backend needs a surfaceless EGL platform on a machine without a display.
    { cwd: root, stdio: 'inherit', env: { EGL_PLATFORM: 'surfaceless', ...process.env }, timeout: 30 * 60 * 1000 },
  );
  if (run.status !== 0) failed = true;
  const summary = existsSync(tap) ? readFileSync(tap, 'utf8') : '';
  const count = (word) => Number(summary.match(new RegExp(`^# ${word} (\\d+)$`, 'm'))?.[1] ?? 0);
  totals.passed += count('pass');
  totals.failed += count('fail') + count('cancelled');
  totals.skipped += count('skipped') + count('todo');
}
rmSync(tapDir, { recursive: true, force: true });
if (failed && totals.failed === 0) totals.failed = 1; // a crash outside any test still fails the run
console.log(`\ntotal: ${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped`);
process.exit(failed ? 1 : 0);
