/** `netmoments analyze` through the real CLI: the report contract and the error cases of issue 4. */
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeNpy, npyToFloat32, readNpy } from '../../src/data/npy.js';
import { cli, expectBadInput } from '../helpers/cli.js';
import { writeFileSync } from 'node:fs';

const LENET = 'fixtures/lenet.onnx';
const tmp = () => mkdtempSync(join(tmpdir(), 'nm-analyze-'));

describe('analyze CLI', () => {
  it('writes a netmoments.analyze/1 report for a batch, with Monte Carlo beside, and a summary on stderr', async () => {
    const dir = tmp();
    const out = join(dir, 'r.json');
    // the first 20 bundled held-out digits
    const x = npyToFloat32(readNpy('fixtures/mnist/digits-100.npy')).slice(0, 20 * 784);
    writeFileSync(join(dir, 'x20.npy'), encodeNpy(x, [20, 1, 28, 28]));
    const r = await cli(['analyze', LENET, '--input', join(dir, 'x20.npy'), '--sigma', '8', '--relu', '2', '--mc', '2000', '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(readFileSync(out, 'utf8'));
    expect(report.schema).toBe('netmoments.analyze/1');
    expect(report.split).toEqual({ index: 2, node: report.split.node, input: report.split.input, output: report.split.output, shape: [500], width: 500 });
    expect(Object.keys(report.run).sort()).toEqual(['jacobian', 'modelSha256', 'seed', 'threads', 'variance', 'version']);
    expect(report.results).toHaveLength(20);
    const labels = Array.from(readNpy('fixtures/mnist/labels-100.npy').data as BigInt64Array, Number);
    let agree = 0;
    for (const res of report.results) {
      expect(res.mean).toHaveLength(10);
      expect(res.variance.every((v: number) => v > 0)).toBe(true);
      expect(res.classProbabilities.reduce((a: number, b: number) => a + b, 0)).toBeCloseTo(1, 6);
      expect(res.flipProbability).toBeGreaterThanOrEqual(0);
      expect(res.marginBound).toBeGreaterThanOrEqual(res.flipProbability - 3 * (res.classProbabilitiesError ?? 0) - 1e-9);
      expect(res.mc.samples).toBe(2000);
      // analytic sd and Monte Carlo sd of the predicted logit agree at sigma 8 (linearization error included) within 25%
      const k = res.cleanPredicted;
      expect(Math.sqrt(res.variance[k]) / Math.sqrt(res.mc.variance[k])).toBeGreaterThan(0.75);
      expect(Math.sqrt(res.variance[k]) / Math.sqrt(res.mc.variance[k])).toBeLessThan(1.25);
      if (res.cleanPredicted === labels[res.input]) agree++;
    }
    expect(agree).toBeGreaterThanOrEqual(19);
    expect(r.stderr).toMatch(/analyzed 20 input\(s\)/);
  }, 300_000);

  it('CSV has one row per input and output index', async () => {
    const r = await cli(['analyze', 'fixtures/affine-relu-affine.onnx', '--sigma', '0.5', '--format', 'csv', '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0].split(',')).toContain('variance_paper');
    expect(lines).toHaveLength(1 + 4);
  });

  it('says on stderr when it uses the zero input and the default noise', async () => {
    const r = await cli(['analyze', 'fixtures/fc-2.onnx']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/zero input/);
    expect(r.stderr).toMatch(/sigma 1/);
  });

  const cases: { name: string; args: (dir: string) => string[]; file: (dir: string) => string; problem: RegExp }[] = [
    {
      name: 'wrong input size',
      args: (dir) => {
        writeFileSync(join(dir, 'x.npy'), encodeNpy(new Float32Array(5), [5]));
        return ['--input', join(dir, 'x.npy')];
      },
      file: (dir) => join(dir, 'x.npy'),
      problem: /5 elements/,
    },
    {
      name: 'NaN input',
      args: (dir) => {
        const x = new Float32Array(784);
        x[17] = Number.NaN;
        writeFileSync(join(dir, 'nan.npy'), encodeNpy(x, [1, 28, 28]));
        return ['--input', join(dir, 'nan.npy')];
      },
      file: (dir) => join(dir, 'nan.npy'),
      problem: /non-finite|NaN/i,
    },
    {
      name: 'non-PSD covariance',
      args: (dir) => {
        const n = 784;
        const c = new Float64Array(n * n);
        for (let i = 0; i < n; i++) c[i * n + i] = 1;
        c[1] = c[n] = 3; // [[1,3],[3,1]] block: eigenvalue -2
        writeFileSync(join(dir, 'cov.npy'), encodeNpy(c, [n, n]));
        return ['--input', 'fixtures/mnist/digit-0.npy', '--noise-cov', join(dir, 'cov.npy')];
      },
      file: (dir) => join(dir, 'cov.npy'),
      problem: /not positive semi-definite.*-2/,
    },
    {
      name: 'unknown ReLU name',
      args: () => ['--input', 'fixtures/mnist/digit-0.npy', '--relu', 'no_such_relu'],
      file: () => LENET,
      problem: /no ReLU named 'no_such_relu'/,
    },
    { name: 'CUDA provider not installed', args: () => ['--input', 'fixtures/mnist/digit-0.npy', '--provider', 'cuda'], file: () => LENET, problem: /CUDA/ },
  ];
  for (const c of cases) {
    it(`${c.name}: exit 2, one line naming the file, no output file`, async () => {
      const dir = tmp();
      const out = join(dir, 'report.json');
      const r = await cli(
        ['analyze', LENET, ...c.args(dir), '--sigma', '8', '--out', out].filter(
          (a, i, all) => !(a === '--sigma' && all.includes('--noise-cov')) && !(all.includes('--noise-cov') && a === '8' && all[i - 1] === '--sigma'),
        ),
      );
      expectBadInput(r, c.file(dir), c.problem);
      expect(existsSync(out)).toBe(false);
    });
  }

  it('an unknown provider name is a usage error (exit 2)', async () => {
    const r = await cli(['analyze', LENET, '--provider', 'tpu']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });
});
