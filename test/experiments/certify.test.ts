/**
 * `certify`: the analytic radius estimate against Cohen et al.'s Monte Carlo certificate on the
 * bundled LeNet and MNIST digits (same class; the certificate sits below the estimate by what the
 * Clopper-Pearson slack predicts from the analytic p_A), abstention where the top class holds less
 * than half the mass, the pairwise miss bound and the radius formula, and the CLI's JSON (against
 * schemas/certify.schema.json), CSV and refusals.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { npyToFloat32, readNpy } from '../../src/data/npy.js';
import { certify, pairwiseMissBound, radiusFromMiss } from '../../src/experiments/certify.js';
import { clopperPearsonLower } from '../../src/moments/beta.js';
import { Phi, PhiInv } from '../../src/moments/special.js';
import { loadModel } from '../../src/onnx/load.js';
import { cli } from '../helpers/cli.js';

const digits = npyToFloat32(readNpy('fixtures/mnist/digits-100.npy'));
const labels = Array.from(readNpy('fixtures/mnist/labels-100.npy').data as BigInt64Array, Number);
const pick = (idx: number[]) => {
  const out = new Float32Array(idx.length * 784);
  idx.forEach((i, k) => out.set(digits.subarray(i * 784, (i + 1) * 784), k * 784));
  return out;
};

describe('certify: formulas', () => {
  it('radiusFromMiss(q) = sigma Phi^-1(1 - q), and keeps digits where 1 - q rounds to 1', async () => {
    for (const p of [0.6, 0.9, 0.999]) expect(radiusFromMiss(2, 1 - p)).toBeCloseTo(2 * PhiInv(p), 10);
    expect(radiusFromMiss(1, 1e-20)).toBeCloseTo(9.262340089798408, 9); // Phi^-1(1 - 1e-20), mpmath
  });
  it('the pairwise miss bound is exact for two classes and an upper bound (Bonferroni) for three', async () => {
    // two classes: P(y_1 >= y_0) = Phi(-(m0 - m1) / sqrt(v0 + v1 - 2 c))
    expect(
      pairwiseMissBound(
        [1, 0],
        [
          [1, 0.3],
          [0.3, 2],
        ],
        0,
      ),
    ).toBeCloseTo(Phi(-1 / Math.sqrt(2.4)), 15);
    // three independent unit-variance classes, margins 2 and 3: exact miss by a 1-D integral
    const mean = [3, 1, 0];
    const cov = [
      [1, 0, 0],
      [0, 1, 0],
      [0, 0, 1],
    ];
    let exact = 0;
    const h = 1e-3;
    for (let t = -10; t < 16; t += h) {
      const y = t + h / 2;
      exact += (Math.exp(-((y - 3) ** 2) / 2) / Math.sqrt(2 * Math.PI)) * Phi(y - 1) * Phi(y) * h;
    }
    const bound = pairwiseMissBound(mean, cov, 0);
    expect(bound).toBeGreaterThanOrEqual(1 - exact);
    expect(bound - (1 - exact)).toBeLessThan(0.01); // tight when misses are rare
  });
});

describe('certify on LeNet digits', () => {
  const model = loadModel('fixtures/lenet.onnx');
  const sigma = 64;
  const N = 5000;
  const alpha = 0.001;

  it('the MC certificate agrees on the class and sits below the analytic estimate by the Clopper-Pearson slack', async () => {
    // digits 2 and 8 of the fixture: analytic p_A 0.86 and 0.87 at sigma 64, where N samples resolve the slack
    const idx = [2, 8];
    const rep = await certify(model, pick(idx), idx.length, null, { sigma, mc: N, alpha, seed: 3 });
    expect(rep.method).toBe('propagate');
    for (const r of rep.results) {
      const a = r.analytic;
      const m = r.mc!;
      expect(a.kind).toBe('estimate');
      expect(m.kind).toBe('certificate');
      expect(a.trust.verdict).toBe('ok');
      expect(m.class).toBe(a.class);
      expect(a.abstain || m.abstain).toBe(false);
      // the certificate is the Clopper-Pearson bound of the count it saw
      expect(m.pALower).toBeCloseTo(clopperPearsonLower(m.count, N, alpha), 12);
      expect(m.radius!).toBeCloseTo(sigma * PhiInv(m.pALower), 6);
      expect(m.radius!).toBeLessThan(a.radius!);
      // what the certificate should be if the analytic p_A were the truth: the count within 4 binomial
      // sd of N p_A, p_A within 0.02 (the trust verdict's scale) of the analytic one
      const bracket = (p: number, sd: number) => {
        const k = Math.min(N, Math.max(0, Math.round(N * p + sd * Math.sqrt(N * p * (1 - p)))));
        return sigma * PhiInv(clopperPearsonLower(k, N, alpha));
      };
      const lo = bracket(Math.max(0.5, a.pA - 0.02), -4);
      const hi = bracket(Math.min(1, a.pA + 0.02), 4);
      expect(m.radius!, `digit ${r.input}: R_mc ${m.radius} vs [${lo}, ${hi}]`).toBeGreaterThanOrEqual(lo);
      expect(m.radius!).toBeLessThanOrEqual(hi);
    }
    const s = rep.summary;
    expect(s.agreement!.classAgreement).toBe(1);
    expect(s.agreement!.compared).toBe(2);
    expect(s.mc!.abstained).toBe(0);
  });

  it('abstains where the top class holds less than half the mass (digit 3, a thin "1", at sigma 64)', async () => {
    const rep = await certify(model, pick([3]), 1, [labels[3]], { sigma, mc: 2000, alpha, seed: 1 });
    const r = rep.results[0];
    expect(r.label).toBe(1);
    expect(r.analytic.pA).toBeLessThan(0.5);
    expect(r.analytic.abstain).toBe(true);
    expect(r.analytic.radius).toBeNull();
    expect(r.mc!.pALower).toBeLessThan(0.5);
    expect(r.mc!.abstain).toBe(true);
    expect(r.mc!.radius).toBeNull();
    expect(rep.summary.analytic.abstained).toBe(1);
    expect(rep.summary.analytic.certifiedCorrect).toBe(0);
  });
});

describe('certify CLI', () => {
  it('writes JSON inside its schema and a CSV beside it with --data; refuses --window', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nm-certify-'));
    const out = join(dir, 'cert.json');
    const r = await cli([
      'certify',
      'fixtures/lenet.onnx',
      '--data',
      'fixtures/mnist/digits-100.npy',
      '--labels',
      'fixtures/mnist/labels-100.npy',
      '--count',
      '2',
      '--sigma',
      '64',
      '--mc',
      '200',
      '--out',
      out,
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/R analytic \(estimate\)/);
    expect(r.stderr).toMatch(/R mc \(certificate\)/);
    expect(r.stderr).toMatch(/model input units/);
    const rep = JSON.parse(readFileSync(out, 'utf8'));
    const validate = new Ajv2020({ strict: true }).compile(JSON.parse(readFileSync('schemas/certify.schema.json', 'utf8')));
    expect(validate(rep), JSON.stringify(validate.errors)).toBe(true);
    expect(rep.results.map((x: { label: number }) => x.label)).toEqual(labels.slice(0, 2));
    const rows = readFileSync(join(dir, 'cert.csv'), 'utf8').trim().split('\n');
    expect(rows).toHaveLength(3);
    expect(rows[0]).toMatch(/^input,label,clean_class,analytic_class,analytic_pA,analytic_radius/);
    expect(rows[1].split(',')[4]).toBe(String(rep.results[0].analytic.pA));

    const w = await cli(['certify', 'fixtures/lenet.onnx', '--input', 'fixtures/mnist/digit-0.npy', '--sigma', '8', '--window', '0,0,7,7']);
    expect(w.code).toBe(2);
    expect(w.stderr).toMatch(/noise on every input element/);
  });
});
