/**
 * `fooling`: with a zero perturbation and vanishing noise nothing is fooled, predicted or real, and
 * the analytic ordering is the real one; a large perturbation fools some images and the report's
 * counts are consistent; a perturbation of the wrong size is one line naming its file.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, expectBadInput } from '../helpers/cli.js';
import { encodeNpy, readNpy, npyToFloat32 } from '../../src/data/npy.js';
import { topK } from '../../src/util/argmax.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'nm-fooling-'));

describe('fooling', () => {
  it('top-k lists are ordered and break ties by index', async () => {
    expect(topK([1, 5, 3, 5], 3)).toEqual([1, 3, 2]);
  });

  it('a zero perturbation with vanishing sigma predicts 0% and is 0%, with perfect top-k ordering', async () => {
    const dir = tmp();
    const p = join(dir, 'zero.npy');
    writeFileSync(p, encodeNpy(new Float32Array(784), [1, 28, 28]));
    for (const sigma of ['0', '1e-3']) {
      const out = join(dir, `f${sigma}.json`);
      const r = await cli([
        'fooling',
        'fixtures/lenet.onnx',
        '--data',
        'fixtures/mnist/digits-100.npy',
        '--count',
        sigma === '0' ? '20' : '3',
        '--perturbation',
        p,
        '--sigma',
        sigma,
        '--out',
        out,
        '-q',
      ]);
      expect(r.code, r.stderr).toBe(0);
      const rep = JSON.parse(readFileSync(out, 'utf8'));
      expect(rep.schema).toBe('netmoments.fooling/1');
      expect(rep.predictedFoolingRate).toBe(0);
      expect(rep.realFoolingRate).toBe(0);
      expect(rep.expectedFoolingRate).toBeLessThan(1e-6);
      expect(rep.topK.map((t: { k: number }) => t.k)).toEqual([1, 2, 3, 4, 5]);
      for (const t of rep.topK) expect(t.accuracy).toBe(1);
    }
  });

  it('a large perturbation: some images fooled, counts consistent, CSV one row per image', async () => {
    const dir = tmp();
    // half of another digit (a "7", digits-100 index 4) added to every image
    const seven = npyToFloat32(readNpy('fixtures/mnist/digits-100.npy')).subarray(4 * 784, 5 * 784);
    const p = join(dir, 'seven.npy');
    writeFileSync(
      p,
      encodeNpy(
        Float32Array.from(seven, (v) => 1.2 * (v + 127.5)),
        [784],
      ),
    );
    const out = join(dir, 'f.json');
    const r = await cli([
      'fooling',
      'fixtures/lenet.onnx',
      '--data',
      'fixtures/mnist/digits-100.npy',
      '--count',
      '12',
      '--perturbation',
      p,
      '--sigma',
      '0',
      '--out',
      out,
      '-q',
    ]);
    expect(r.code, r.stderr).toBe(0);
    const rep = JSON.parse(readFileSync(out, 'utf8'));
    expect(rep.realFoolingRate).toBeGreaterThan(0);
    expect(rep.results).toHaveLength(12);
    const N = rep.results.length;
    expect(rep.agreement).toBeCloseTo(1 - (rep.missed + rep.falseAlarms) / N, 12);
    expect(rep.realFoolingRate).toBeCloseTo(rep.results.filter((x: { realFooled: boolean }) => x.realFooled).length / N, 12);
    for (let k = 1; k < rep.topK.length; k++) expect(rep.topK[k].accuracy).toBeLessThanOrEqual(rep.topK[k - 1].accuracy);
    const csvOut = join(dir, 'f.csv');
    const c = await cli([
      'fooling',
      'fixtures/lenet.onnx',
      '--data',
      'fixtures/mnist/digits-100.npy',
      '--count',
      '3',
      '--perturbation',
      p,
      '--format',
      'csv',
      '--out',
      csvOut,
      '-q',
    ]);
    expect(c.code, c.stderr).toBe(0);
    expect(readFileSync(csvOut, 'utf8').trim().split('\n')).toHaveLength(4);
  });

  it('a perturbation of the wrong size, or with NaN, is one line naming the file (exit 2)', async () => {
    const dir = tmp();
    const bad = join(dir, 'bad.npy');
    writeFileSync(bad, encodeNpy(new Float32Array(100), [100]));
    expectBadInput(await cli(['fooling', 'fixtures/lenet.onnx', '--data', 'fixtures/mnist/digit-0.npy', '--perturbation', bad]), bad, /784|elements|values/);
    const nan = join(dir, 'nan.npy');
    const v = new Float32Array(784);
    v[5] = Number.NaN;
    writeFileSync(nan, encodeNpy(v, [784]));
    expectBadInput(await cli(['fooling', 'fixtures/lenet.onnx', '--data', 'fixtures/mnist/digit-0.npy', '--perturbation', nan]), nan, /non-finite/);
  });
});
