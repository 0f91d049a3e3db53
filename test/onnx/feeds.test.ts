/**
 * Models with several data inputs (issue 14, class 4): `--noise-input NAME` and `--feed NAME=FILE.npy`.
 * The two-input net (models.ts, twoInputNet) concatenates a Gemm of the noisy input with a Gemm of
 * the fixed one, so a fed value must reach every row of a batch. Checked through the CLI: the
 * clean output equals onnxruntime's on the original file fed both inputs; the analytic moments
 * (both methods) agree with a Monte Carlo of the real model within its sampling error; every
 * misuse is one line naming the model or the file, exit 2.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { encodeNpy } from '../../src/data/npy.js';
import { ModelSession } from '../../src/runtime/session.js';
import { cli, expectBadInput, ROOT } from '../helpers/cli.js';
import { twoInputNet } from './models.js';

const dir = mkdtempSync(join(tmpdir(), 'nm-feeds-'));
const model = join(dir, 'two.onnx');
const xFile = join(dir, 'x.npy');
const cFile = join(dir, 'c.npy');
const x = Float32Array.from([0.2, 0.1, -0.4, 0.9]);
const c = Float32Array.from([0.3, -0.7, 1.2]);

beforeAll(async () => {
  writeFileSync(model, twoInputNet());
  writeFileSync(xFile, encodeNpy(x, [4]));
  // the batch axis may be given or left out: this one has it
  writeFileSync(cFile, encodeNpy(c, [1, 3]));
  writeFileSync(join(dir, 'c-bad.npy'), encodeNpy(Float32Array.from([1, 2]), [2]));
});

interface Report {
  method: string;
  results: { clean: number[]; mean: number[]; variance: number[]; mc: { samples: number; mean: number[]; variance: number[] } }[];
}

const reports = new Map<string, Report>();
async function analyze(method: string): Promise<Report> {
  const done = reports.get(method);
  if (done) return done;
  const out = join(dir, `${method}.json`);
  const r = await cli([
    'analyze',
    model,
    '--input',
    xFile,
    '--noise-input',
    'x',
    '--feed',
    `c=${cFile}`,
    '--sigma',
    '0.5',
    '--mc',
    '20000',
    '--seed',
    '3',
    '--method',
    method,
    '--out',
    out,
  ]);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stderr).toMatch(/input 'c' fixed to .*c\.npy \(--feed\); the noise goes on 'x'/);
  const report = JSON.parse(readFileSync(out, 'utf8')) as Report;
  reports.set(method, report);
  return report;
}

describe('--noise-input and --feed', () => {
  it('the clean output is the original model fed both inputs', async () => {
    const report = await analyze('two-stage');
    const session = await ModelSession.create(twoInputNet());
    try {
      const want = await session.run({ x: { type: 'float32', data: x, dims: [1, 4] }, c: { type: 'float32', data: c, dims: [1, 3] } }, ['y']);
      const y = want.y.data as Float32Array;
      expect(report.results[0].clean).toHaveLength(2);
      report.results[0].clean.forEach((v, i) => expect(v).toBeCloseTo(y[i], 5));
    } finally {
      await session.release();
    }
  });

  for (const method of ['two-stage', 'propagate']) {
    it(`${method}: moments agree with a 20,000-sample Monte Carlo of the real model`, async () => {
      const r = (await analyze(method)).results[0];
      for (let i = 0; i < 2; i++) {
        const se = Math.sqrt(r.mc.variance[i] / r.mc.samples);
        // one ReLU layer: both means are exact (nothing else is held fixed; propagate's ReLU mean is
        // Theorem 1's), so within 5 standard errors; the MC variance's own sd is sqrt(2/20000) = 1%
        expect(Math.abs(r.mean[i] - r.mc.mean[i]), `g[${i}] mean`).toBeLessThan(5 * se);
        // two-stage is exact here (Affine, ReLU, Affine); propagate carries the ReLU's residual as
        // independent between units through the last Gemm (src/propagate/rules.ts), measured at 0.90 of MC
        const [lo, hi] = method === 'two-stage' ? [0.95, 1.05] : [0.85, 1.15];
        expect(r.variance[i] / r.mc.variance[i], `g[${i}] variance`).toBeGreaterThan(lo);
        expect(r.variance[i] / r.mc.variance[i], `g[${i}] variance`).toBeLessThan(hi);
      }
    });
  }

  it('misuse: one line, exit 2', async () => {
    const base = ['analyze', model, '--input', xFile, '--sigma', '0.5'];
    expectBadInput(await cli(base), model, /2 data inputs \('x', 'c'\).*--noise-input x --feed c=FILE\.npy/);
    expectBadInput(await cli([...base, '--noise-input', 'x']), model, /the noise goes on 'x'; give the other inputs fixed values: --feed c=FILE\.npy/);
    expectBadInput(
      await cli([...base, '--noise-input', 'z', '--feed', `c=${cFile}`]),
      model,
      /--noise-input z: the model has no data input of that name \(its inputs: 'x', 'c'\)/,
    );
    expectBadInput(await cli([...base, '--feed', `q=${cFile}`]), model, /--feed q: the model has no data input of that name/);
    expectBadInput(await cli([...base, '--feed', `c=${join(dir, 'c-bad.npy')}`]), model, /--feed c: .*c-bad\.npy has shape \[2\], the input 'c' is \[N,3\]/);
    expectBadInput(await cli([...base, '--feed', `c=${join(dir, 'missing.npy')}`]), 'missing.npy', /no such file/);
    expectBadInput(await cli([...base, '--noise-input', 'x', '--feed', `x=${xFile}`, '--feed', `c=${cFile}`]), model, /--feed x: that is the --noise-input/);
  });
});

const CONTROLLER = join(ROOT, '..', 'shared', 'wild', '17-controller-2inputs.onnx');
if (!existsSync(CONTROLLER)) console.log(`test/onnx/feeds: ${CONTROLLER} is absent; its --feed case is skipped`);

describe.skipIf(!existsSync(CONTROLLER))('a third-party two-input model (../shared/wild/17-controller-2inputs)', () => {
  it('analyzes with --noise-input input_1 --feed input_2=...: the clean output is the original fed both inputs', async () => {
    const x1 = Float32Array.from([0.5, 0.1, -0.3, 0.2]);
    const x2 = Float32Array.from([0.1, -0.2, 0.3, 0.05]);
    writeFileSync(join(dir, 'x1.npy'), encodeNpy(x1, [4]));
    writeFileSync(join(dir, 'x2.npy'), encodeNpy(x2, [1, 4]));
    const out = join(dir, 'controller.json');
    const r = await cli([
      'analyze',
      CONTROLLER,
      '--input',
      join(dir, 'x1.npy'),
      '--noise-input',
      'input_1',
      '--feed',
      `input_2=${join(dir, 'x2.npy')}`,
      '--sigma',
      '0.01',
      '--mc',
      '2000',
      '--seed',
      '1',
      '--out',
      out,
    ]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(readFileSync(out, 'utf8')) as Report & { output: { name: string } };
    const session = await ModelSession.create(new Uint8Array(readFileSync(CONTROLLER)));
    try {
      const want = await session.run({ input_1: { type: 'float32', data: x1, dims: [1, 4] }, input_2: { type: 'float32', data: x2, dims: [1, 4] } }, [
        report.output.name,
      ]);
      const y = want[report.output.name].data as Float32Array;
      report.results[0].clean.forEach((v, i) => expect(Math.abs(v - y[i])).toBeLessThan(1e-5 * (1 + Math.abs(y[i]))));
      const res = report.results[0];
      for (let i = 0; i < res.mean.length; i++) {
        expect(Math.abs(res.mean[i] - res.mc.mean[i])).toBeLessThan(5 * Math.sqrt(res.mc.variance[i] / res.mc.samples));
        expect(res.variance[i] / res.mc.variance[i]).toBeGreaterThan(0.85);
        expect(res.variance[i] / res.mc.variance[i]).toBeLessThan(1.15);
      }
    } finally {
      await session.release();
    }
  });
});
