// safetensors: our writer against a file written by an independent writer (numpy, following the format spec:
// u64 LE header length + JSON + raw data), our reader against hostile headers, and seeded fuzzing.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { FormatError } from '../../src/core/formats/errors.ts';
import { f32Tensor, readSafetensors, toFloat32, writeSafetensors, type SafeTensor } from '../../src/core/model/safetensors.ts';
import { fuzzReader } from '../helpers/fuzz.ts';

/** Writes a safetensors file with Python + numpy (its own packing code, not ours) and returns its bytes. */
function numpySafetensors(): Uint8Array {
  const script = `
import json, struct, sys, numpy as np
a = np.arange(6, dtype='<f4').reshape(2, 3) / 4
b = np.array([1.5, -2], dtype='<f2')
c = np.array(3.25, dtype='<f8')
header = {"__metadata__": {"format": "pt"},
          "a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
          "b": {"dtype": "F16", "shape": [2], "data_offsets": [24, 28]},
          "c": {"dtype": "F64", "shape": [], "data_offsets": [28, 36]}}
h = json.dumps(header).encode()
h += b' ' * (-len(h) % 8)
sys.stdout.buffer.write(struct.pack('<Q', len(h)) + h + a.tobytes() + b.tobytes() + c.tobytes())
`;
  return new Uint8Array(execFileSync('python3', ['-c', script]));
}

test('safetensors: reads a file written by numpy; our writer round-trips and lays data out the same way', () => {
  const bytes = numpySafetensors();
  const file = readSafetensors(bytes, 'np.safetensors');
  assert.deepEqual(file.metadata, { format: 'pt' });
  assert.deepEqual([...file.tensors.keys()], ['a', 'b', 'c']);
  assert.deepEqual([...toFloat32(file.tensors.get('a')!)], [0, 0.25, 0.5, 0.75, 1, 1.25]);
  assert.deepEqual([...toFloat32(file.tensors.get('b')!)], [1.5, -2]);
  assert.deepEqual(file.tensors.get('c')!.shape, []);
  assert.deepEqual([...toFloat32(file.tensors.get('c')!)], [3.25]);

  const ours = writeSafetensors([...file.tensors], file.metadata);
  // Header padded to 8 bytes, data identical and in the same order.
  const n = Number(new DataView(ours.buffer).getBigUint64(0, true));
  assert.equal(n % 8, 0);
  assert.deepEqual(ours.subarray(8 + n), bytes.subarray(bytes.length - 36));
  const again = readSafetensors(ours);
  for (const [name, t] of file.tensors) assert.deepEqual(again.tensors.get(name), t);
});

/** A header + data file with arbitrary header text. */
function withHeader(header: unknown, data = new Uint8Array(16)): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

test('safetensors: hostile headers are one-line FormatErrors', () => {
  const ok = { x: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] } };
  assert.equal(readSafetensors(withHeader(ok)).tensors.size, 1);
  const bad: [string, Uint8Array, RegExp][] = [
    ['short file', new Uint8Array(5), /too short/],
    ['absurd header length', (() => { const b = new Uint8Array(16); new DataView(b.buffer).setBigUint64(0, 2n ** 62n, true); return b; })(), /limit/],
    ['header past the end', (() => { const b = withHeader(ok); new DataView(b.buffer).setBigUint64(0, 1000n, true); return b; })(), /past the end/],
    ['not JSON', withHeader('{"x": '), /not valid JSON/],
    ['not an object', withHeader('[1, 2]'), /not a JSON object/],
    ['lying size', withHeader({ x: { dtype: 'F32', shape: [3, 2], data_offsets: [0, 16] } }), /needs 24 bytes/],
    ['unknown dtype', withHeader({ x: { dtype: 'F8', shape: [16], data_offsets: [0, 16] } }), /unknown dtype/],
    ['negative shape', withHeader({ x: { dtype: 'U8', shape: [-16], data_offsets: [0, 16] } }), /shape/],
    ['reversed offsets', withHeader({ x: { dtype: 'U8', shape: [0], data_offsets: [16, 0] } }), /needs 0 bytes/],
    ['overlap', withHeader({ x: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] }, y: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } }), /overlaps/],
    ['gap', withHeader({ x: { dtype: 'F32', shape: [2], data_offsets: [8, 16] } }), /gap of 8 bytes/],
    ['trailing bytes', withHeader({ x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }), /8 bytes after/],
    ['data past the end', withHeader({ x: { dtype: 'F32', shape: [8], data_offsets: [0, 32] } }), /truncated/],
    ['bad metadata', withHeader({ __metadata__: { a: 1 }, ...ok }), /not a string/],
  ];
  for (const [what, bytes, message] of bad) {
    assert.throws(() => readSafetensors(bytes, 'w.safetensors'), (e) => e instanceof FormatError && message.test(e.message) && e.message.startsWith('w.safetensors: ') && !e.message.includes('\n'), what);
  }
});

test('safetensors: seeded fuzzing gives a file or a FormatError, never anything else', async () => {
  const t = (n: number, shape: number[]): SafeTensor => f32Tensor(Array.from({ length: n }, (_, i) => i / 3), shape);
  const seeds = [
    writeSafetensors([['visual.conv1.weight', t(2 * 3 * 2 * 2, [2, 3, 2, 2])], ['logit_scale', t(1, [])], ['proj', t(6, [3, 2])]], { format: 'pt' }),
    numpySafetensors(),
  ];
  const report = await fuzzReader(seeds, (bytes) => {
    const file = readSafetensors(bytes, 'fuzz');
    for (const [name, tensor] of file.tensors) if (tensor.dtype.startsWith('F')) toFloat32(tensor, 'fuzz', name);
  }, { seed: 11, cases: 4000 });
  assert.equal(report.cases, 4000);
  assert.ok(report.rejected > 1000 && report.accepted > 10, JSON.stringify(report));
});
