import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadModel } from '../../src/onnx/load.js';
import { compareSplit } from '../../src/onnx/split.js';
import { zeroFeeds } from '../../src/onnx/shapes.js';
import { cli, ROOT } from '../helpers/cli.js';
import { residualNet, rng, torchBatch1Net } from '../onnx/models.js';

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'nm-split-'));
}

describe('netmoments split', () => {
  it('writes bottom.onnx, top.onnx and split.json that compose to the model', async () => {
    const dir = tmp();
    const file = join(dir, 'residual.onnx');
    writeFileSync(file, residualNet());
    const out = join(dir, 'out');
    const r = await cli(['split', file, '--relu', 'relu1', '--out-dir', out]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(readdirSync(out).sort()).toEqual(['bottom.onnx', 'split.json', 'top.onnx']);
    const manifest = JSON.parse(readFileSync(join(out, 'split.json'), 'utf8'));
    expect(manifest.schema).toBe('netmoments.split/1');
    expect(manifest.relu).toEqual({ index: 0, node: 'relu1', input: 'a', output: 'r1', shape: [2, 6, 6], width: 72 });
    expect(manifest.skip).toEqual(['a', 's']);
    expect(manifest.outputs).toEqual(['y']);
    const bottom = loadModel(join(out, 'bottom.onnx')).graph;
    const top = loadModel(join(out, 'top.onnx')).graph;
    expect(top.inputs.map((i) => i.name)).toEqual(['r1', 'a', 's']);
    const original = loadModel(file).graph;
    const feeds = zeroFeeds(original, 4);
    const g = rng(9);
    const x = feeds.x.data as Float32Array;
    for (let i = 0; i < x.length; i++) x[i] = g();
    const diffs = await compareSplit(original, { bottom, top, relu: manifest.relu, skip: manifest.skip }, feeds);
    for (const d of diffs) expect(d.maxAbsDiff).toBeLessThan(1e-5 * Math.max(1, d.maxAbs));
  });

  it('--output picks a tensor above the cut; --dynamic-batch fixes a batch-1 export first', async () => {
    const dir = tmp();
    const file = join(dir, 'torch.onnx');
    writeFileSync(file, torchBatch1Net());
    const out = join(dir, 'out');
    const r = await cli(['split', file, '--relu', '1', '--out-dir', out, '--output', '/relu_1/Relu_output_0', '--dynamic-batch']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const top = loadModel(join(out, 'top.onnx')).graph;
    expect(top.outputs.map((o) => [o.name, o.shape])).toEqual([['/relu_1/Relu_output_0', ['N', 7]]]);
    const bottom = loadModel(join(out, 'bottom.onnx')).graph;
    expect(bottom.inputs[0].shape).toEqual(['N', 1, 5, 5]);
  });

  it('splits fixtures from the command line (ReLU 0 of the first four; the library test covers every split)', async () => {
    const fixtures = existsSync(join(ROOT, 'fixtures')) ? readdirSync(join(ROOT, 'fixtures')).filter((f) => f.endsWith('.onnx')) : [];
    for (const f of fixtures.slice(0, 4)) {
      const out = join(tmp(), 'out');
      const r = await cli(['split', join('fixtures', f), '--relu', '0', '--out-dir', out]);
      expect(r.code, `${f}: ${r.stderr}`).toBe(0);
      expect(readdirSync(out).sort()).toEqual(['bottom.onnx', 'split.json', 'top.onnx']);
    }
  });
});
