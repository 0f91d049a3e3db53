/**
 * The one Surrogate type and its moments entry point: surrogateMoments of a surrogate over the n
 * inputs under a Noise equals surrogateMoments of the same surrogate projected on the noise's factor
 * (A F, D F; Sigma = I in its columns), equals the bank's Gram form (inputMoments with S = (A F)(A F)^T),
 * equals the engine run on the network written out by hand with the noise as a dense spec, all to
 * 1e-12 relative. And the one Noise value: validated once, windows restrict it, its factor
 * reproduces Sigma.
 */
import { describe, expect, it } from 'vitest';
import { NetmomentsError } from '../../src/errors.js';
import { centreGram, inputMoments } from '../../src/linearize/bankMoments.js';
import { jsLinearAlgebra } from '../../src/moments/linalg.js';
import { Rng } from '../../src/moments/montecarlo.js';
import { networkMoments, type NetworkMoments } from '../../src/moments/network.js';
import { projectSurrogate, surrogateMoments, surrogateOffsets, topOffset, type Surrogate } from '../../src/moments/surrogate.js';
import { addFactorColumn, checkSigma, isNoise, noiseFactor, validateNoise, type Noise, type NoiseCovariance } from '../../src/noise.js';

const n = 20;
const p = 14;
const d = 4;

function randomSurrogate(seed: number): { s: Surrogate; xb: Float64Array } {
  const r = new Rng(seed);
  const s: Surrogate = {
    A: r.fillNormal(new Float64Array(p * n)).map((v) => v / Math.sqrt(n)),
    B: r.fillNormal(new Float64Array(d * p)),
    D: r.fillNormal(new Float64Array(d * n)).map((v) => 0.3 * v),
    // pre-activations near 0 so that many units are uncertain
    zb: r.fillNormal(new Float64Array(p)).map((v) => 0.5 * v),
    gb: r.fillNormal(new Float64Array(d)),
  };
  return { s, xb: r.fillNormal(new Float64Array(n)) };
}

function matVec(M: Float64Array, rows: number, cols: number, x: Float64Array): Float64Array {
  return Float64Array.from({ length: rows }, (_, i) => {
    let t = 0;
    for (let j = 0; j < cols; j++) t += M[i * cols + j] * x[j];
    return t;
  });
}

function noises(seed: number): [string, NoiseCovariance, Int32Array | undefined][] {
  const r = new Rng(seed);
  const L = r.fillNormal(new Float64Array(n * 6)).map((v) => 0.4 * v); // rank 6
  const cov = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) for (let k = 0; k < 6; k++) cov[i * n + j] += L[i * 6 + k] * L[j * 6 + k];
  const window = Int32Array.of(2, 3, 4, 9, 10, 11, 17);
  return [
    ['isotropic', { kind: 'isotropic', sigma: 0.6 }, undefined],
    ['isotropic in a window', { kind: 'isotropic', sigma: 0.8 }, window],
    ['diagonal with zeros', { kind: 'diagonal', variance: Float64Array.from({ length: n }, (_, i) => (i % 4 === 1 ? 0 : 0.1 + 0.05 * i)) }, undefined],
    ['full, singular', { kind: 'full', cov }, undefined],
    ['full in a window', { kind: 'full', cov }, window],
    ['low rank', { kind: 'lowrank', factor: L, rank: 6 }, undefined],
  ];
}

/** The noise as a spec over all n elements (window included): Sigma_full = P^T Sigma_S P, from the factor's columns. */
function denseSpec(noise: Noise): NoiseCovariance {
  const f = noiseFactor(noise);
  const r = f.r;
  const F = new Float64Array(r * n); // F^T: row k is the factor's column k over all n elements
  for (let k = 0; k < r; k++) addFactorColumn(f, k, F.subarray(k * n, (k + 1) * n));
  const cov = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) for (let k = 0; k < r; k++) cov[i * n + j] += F[k * n + i] * F[k * n + j];
  return { kind: 'full', cov };
}

function expectSame(
  a: NetworkMoments | { mean: Float64Array; variance?: Float64Array; covariance?: Float64Array },
  b: NetworkMoments,
  what: string,
  tol = 1e-12,
) {
  const scale = Math.max(...b.mean.map(Math.abs), ...(b.variance ?? []).map(Math.sqrt), 1e-300);
  for (let i = 0; i < d; i++) {
    expect(Math.abs(a.mean[i] - b.mean[i]), `${what}: mean ${i}`).toBeLessThanOrEqual(tol * scale);
    expect(Math.abs(a.variance![i] - b.variance![i]), `${what}: variance ${i}`).toBeLessThanOrEqual(tol * b.variance![i] + 1e-300);
  }
  const vmax = Math.max(...b.variance!);
  for (let k = 0; k < d * d; k++) expect(Math.abs(a.covariance![k] - b.covariance![k]), `${what}: covariance ${k}`).toBeLessThanOrEqual(tol * vmax);
}

describe('surrogateMoments: one entry point for every form of the surrogate', () => {
  const { s, xb } = randomSurrogate(3);
  const mu = Float64Array.from(xb, (v, j) => v + 0.2 * Math.sin(j));
  const delta = Float64Array.from(mu, (v, j) => v - xb[j]);
  const offset = { A: matVec(s.A, p, n, delta), D: matVec(s.D!, d, n, delta) };

  for (const [name, spec, window] of noises(5)) {
    it(`${name}: plain with the Noise == projected on its factor == Gram form == the network by hand`, async () => {
      const noise = validateNoise(spec, n, window);
      const plain = await surrogateMoments(s, noise, { offset, threads: 1 });
      expect(plain.units.uncertain).toBeGreaterThan(2);

      const factor = noiseFactor(noise);
      const projected = await projectSurrogate(s, factor);
      expect(projected.A.length).toBe(p * factor.r);
      const viaFactor = await surrogateMoments(projected, factor, { offset, threads: 1 });
      expectSame(viaFactor, plain, 'projected');
      for (let i = 0; i < d; i++) expect(Math.abs(viaFactor.variancePaper![i] - plain.variancePaper![i])).toBeLessThanOrEqual(1e-12 * plain.variancePaper![i]);
      expect(viaFactor.units.uncertain).toBe(plain.units.uncertain);

      const gram = await centreGram(jsLinearAlgebra, projected.A, projected.D, projected.B, projected.zb, projected.gb, p, d, factor.r);
      const viaGram = await inputMoments(jsLinearAlgebra, gram, offset.A, offset.D, true);
      expectSame(viaGram, plain, 'gram');
      expect(viaGram.uncertain).toBe(plain.units.uncertain);
      const meanOnly = await inputMoments(
        jsLinearAlgebra,
        await centreGram(jsLinearAlgebra, projected.A, undefined, projected.B, projected.zb, projected.gb, p, d, factor.r, false),
        offset.A,
        offset.D,
        false,
      );
      for (let i = 0; i < d; i++) expect(Math.abs(meanOnly.mean[i] - plain.mean[i])).toBeLessThanOrEqual(1e-12 * Math.max(...plain.mean.map(Math.abs)));
      expect(meanOnly.variance).toBeUndefined();

      // the network written out: m = A mu + c1, the skip mean D mu + c2, the noise as a dense n x n spec
      const { c1, c2 } = surrogateOffsets(s, xb);
      const m = Float64Array.from(matVec(s.A, p, n, mu), (v, u) => v + c1[u]);
      const byHand = await networkMoments(
        { A: { data: s.A, rows: p, cols: n }, B: { data: s.B, rows: d, cols: p }, D: { data: s.D!, rows: d, cols: n }, m, c2, mu },
        denseSpec(noise),
        { threads: 1 },
      );
      expectSame(byHand, plain, 'by hand', 1e-10);
    });
  }

  it('a factor of the wrong width, or a Noise for other inputs, is refused', async () => {
    // a window's factor has 3 columns, the plain surrogate n
    const noise = validateNoise({ kind: 'isotropic', sigma: 1 }, n, Int32Array.of(1, 2, 3));
    await expect(surrogateMoments(s, noiseFactor(noise))).rejects.toThrow(/20 columns, the noise factor 3/);
    await expect(surrogateMoments(s, validateNoise({ kind: 'isotropic', sigma: 1 }, n + 1))).rejects.toBeInstanceOf(NetmomentsError);
  });

  it('topOffset and surrogateOffsets: c1 = zb - A xb, c2 = gb - B relu(zb) - D xb', () => {
    const { c1, c2 } = surrogateOffsets(s, xb);
    const top = topOffset(s.B, s.zb, s.gb, p, d);
    const Axb = matVec(s.A, p, n, xb);
    const Dxb = matVec(s.D!, d, n, xb);
    for (let u = 0; u < p; u++) expect(c1[u]).toBeCloseTo(s.zb[u] - Axb[u], 14);
    for (let i = 0; i < d; i++) expect(c2[i]).toBeCloseTo(top[i] - Dxb[i], 14);
  });
});

describe('the one Noise value', () => {
  it('a Noise passes validation unchanged; a window restricts it as it restricts the spec', () => {
    for (const [name, spec] of noises(7)) {
      const whole = validateNoise(spec, n);
      expect(isNoise(whole), name).toBe(true);
      expect(isNoise(spec), name).toBe(false);
      expect(validateNoise(whole, n)).toBe(whole);
      const window = Int32Array.of(0, 1, 2, 5, 8, 13, 19);
      const a = validateNoise(whole, n, window);
      const b = validateNoise(spec, n, window);
      expect(Array.from(a.support), name).toEqual(Array.from(b.support));
      expect(a.maxStd, name).toBeCloseTo(b.maxStd, 14);
      expect(a.sigma, name).toEqual(b.sigma);
    }
  });

  it('the factor reproduces Sigma on the support, without a dense matrix for isotropic or diagonal noise', () => {
    for (const [name, spec, window] of noises(9)) {
      const noise = validateNoise(spec, n, window);
      const f = noiseFactor(noise);
      if (spec.kind === 'isotropic' || spec.kind === 'diagonal') expect(f.kind, name).toBe('axes');
      const want = denseSpec(noise) as { cov: Float64Array };
      const q = noise.support.length;
      for (let a = 0; a < q; a++)
        for (let b = 0; b < q; b++) {
          const i = noise.support[a];
          const j = noise.support[b];
          let sigma: number;
          const s = noise.sigma;
          if (s.kind === 'isotropic') sigma = a === b ? s.sigma ** 2 : 0;
          else if (s.kind === 'diagonal') sigma = a === b ? s.variance[a] : 0;
          else if (s.kind === 'full') sigma = s.cov[a * q + b];
          else {
            sigma = 0;
            for (let k = 0; k < s.rank; k++) sigma += s.factor[a * s.rank + k] * s.factor[b * s.rank + k];
          }
          expect(Math.abs(want.cov[i * n + j] - sigma), `${name} (${i},${j})`).toBeLessThan(1e-12);
        }
    }
  });

  it('one sigma check: finite and >= 0, or > 0 where noise is needed', () => {
    expect(() => checkSigma(-1)).toThrow(/--sigma must be a finite number >= 0, got -1/);
    expect(() => checkSigma(Number.NaN)).toThrow(NetmomentsError);
    expect(() => checkSigma(0)).not.toThrow();
    expect(() => checkSigma(0, '--sigma', true)).toThrow(/--sigma must be a finite number > 0, got 0/);
    expect(() => validateNoise({ kind: 'isotropic', sigma: Infinity }, 3)).toThrow(/--sigma must be a finite number >= 0/);
  });
});
