import { describe, expect, it } from 'vitest';
import { NetmomentsError } from '../../src/errors.js';
import { differenceWeights, meanGradient, networkMeanOnly } from '../../src/moments/gradients.js';
import type { NoiseCovariance, ShallowNetwork } from '../../src/moments/network.js';
import { naiveMatMul, naiveTranspose, normalGenerator } from './integrate.js';

const n = 4,
  p = 7,
  d = 3;

function makeNet(seed: number, skip: boolean) {
  const g = normalGenerator(seed);
  const A = Float64Array.from({ length: p * n }, () => g());
  const B = Float64Array.from({ length: d * p }, () => g());
  const c1 = Float64Array.from({ length: p }, () => g());
  const D = skip ? Float64Array.from({ length: d * n }, () => g()) : undefined;
  const c2 = Float64Array.from({ length: d }, () => g());
  const at = (mu: Float64Array): ShallowNetwork => {
    const m = naiveMatMul(A, mu, p, n, 1).map((x, v) => x + c1[v]);
    const net: ShallowNetwork = { A: { data: A, rows: p, cols: n }, B: { data: B, rows: d, cols: p }, m, c2 };
    if (D) {
      net.D = { data: D, rows: d, cols: n };
      net.mu = mu;
    }
    return net;
  };
  return { at, c1, mu: Float64Array.from({ length: n }, () => 0.5 * g()) };
}

const w = differenceWeights(d, 2, 0); // E_2 - E_0

async function value(net: ShallowNetwork, noise: NoiseCovariance): Promise<number> {
  const mean = await networkMeanOnly(net, noise);
  let s = 0;
  for (let i = 0; i < d; i++) s += w[i] * mean[i];
  return s;
}

/** Central finite difference with step h. */
async function fd(f: (t: number) => Promise<number>, h: number): Promise<number> {
  return ((await f(h)) - (await f(-h))) / (2 * h);
}

function close(x: number, y: number, what: string, rel = 1e-6): void {
  expect(Math.abs(x - y), what).toBeLessThanOrEqual(rel * Math.max(1e-3, Math.abs(y)));
}

describe('closed-form gradient of the mean', () => {
  it('d/dmu matches central finite differences (with and without a skip path)', async () => {
    for (const skip of [false, true]) {
      const { at, mu } = makeNet(1, skip);
      const noise: NoiseCovariance = { kind: 'isotropic', sigma: 0.8 };
      const grad = await meanGradient(at(mu), noise, w);
      expect(grad.value).toBeCloseTo(await value(at(mu), noise), 14);
      for (let j = 0; j < n; j++) {
        const num = await fd(async (h) => value(at(mu.map((x, k) => (k === j ? x + h : x))), noise), 1e-5);
        close(grad.dMu[j], num, `skip=${skip} dMu[${j}]`);
      }
    }
  });

  it('d/dsigma^2 (isotropic) and d/dv_j (per-pixel variance) match finite differences', async () => {
    const { at, mu } = makeNet(2, true);
    const net = at(mu);
    const s2 = 0.6;
    const grad = await meanGradient(net, { kind: 'isotropic', sigma: Math.sqrt(s2) }, w);
    const num = await fd(async (h) => value(net, { kind: 'isotropic', sigma: Math.sqrt(s2 + h) }), 1e-5);
    close(grad.dSigma2 as number, num, 'dSigma2');
    // the per-pixel derivative at the isotropic point, and for a general diagonal
    for (const base of [new Float64Array(n).fill(s2), Float64Array.of(0.2, 1.5, 0.05, 0.7)]) {
      const g2 = await meanGradient(net, { kind: 'diagonal', variance: base }, w);
      for (let j = 0; j < n; j++) {
        const nj = await fd(async (h) => value(net, { kind: 'diagonal', variance: base.map((v, k) => (k === j ? v + h : v)) }), 1e-6);
        close((g2.dVariance as Float64Array)[j], nj, `dVariance[${j}]`);
      }
    }
    let sum = 0;
    for (const v of grad.dVariance as Float64Array) sum += v;
    expect(sum).toBeCloseTo(grad.dSigma2 as number, 13);
  });

  it('d/dSigma (full) and d/dF (low rank) match finite differences', async () => {
    const { at, mu } = makeNet(3, false);
    const net = at(mu);
    const g = normalGenerator(4);
    const F = Float64Array.from({ length: n * 2 }, () => g());
    const cov = naiveMatMul(F, naiveTranspose(F, n, 2), n, 2, n);
    for (let i = 0; i < n; i++) cov[i * n + i] += 0.3;
    const gf = await meanGradient(net, { kind: 'full', cov }, w);
    for (const [j, k] of [
      [0, 0],
      [1, 2],
      [3, 1],
      [2, 2],
    ]) {
      // a symmetric perturbation of (j, k) and (k, j) moves the mean by dCov_jk + dCov_kj (or dCov_jj)
      const num = await fd(async (h) => {
        const c = Float64Array.from(cov);
        c[j * n + k] += h;
        if (j !== k) c[k * n + j] += h;
        return value(net, { kind: 'full', cov: c });
      }, 1e-6);
      const dc = gf.dCov as Float64Array;
      close(j === k ? dc[j * n + j] : dc[j * n + k] + dc[k * n + j], num, `dCov[${j},${k}]`);
    }
    const gl = await meanGradient(net, { kind: 'lowrank', factor: F, rank: 2 }, w);
    for (let e = 0; e < n * 2; e++) {
      const num = await fd(async (h) => value(net, { kind: 'lowrank', factor: F.map((x, k) => (k === e ? x + h : x)), rank: 2 }), 1e-6);
      close((gl.dFactor as Float64Array)[e], num, `dFactor[${e}]`);
    }
  });

  it('units with s = 0 contribute their limits; bad weights are NetmomentsErrors', async () => {
    const { at, c1, mu } = makeNet(5, false);
    const net = at(mu);
    // a unit whose row of A touches only a zero-variance input: s = 0 there
    const A = Float64Array.from(net.A.data);
    for (let j = 0; j < n; j++) A[j] = j === 3 ? 1.5 : 0;
    const m = naiveMatMul(A, mu, p, n, 1).map((x, v) => x + (v === 0 ? 0.25 : c1[v]));
    const net2 = { ...net, A: { data: A, rows: p, cols: n }, m };
    const variance = Float64Array.of(0.4, 0.9, 0.3, 0);
    const grad = await meanGradient(net2, { kind: 'diagonal', variance }, w);
    for (const v of grad.dVariance as Float64Array) expect(Number.isFinite(v)).toBe(true);
    expect(grad.units.s[0]).toBe(0);
    // m_0 > 0 and s_0 = 0: d/dmu through that unit is the full slope (Phi = 1)
    const num = await fd(async (h) => value({ ...net2, m: m.map((x, v) => (v === 0 ? x + h : x)) }, { kind: 'diagonal', variance }), 1e-6);
    let direct = 0;
    for (let i = 0; i < d; i++) direct += w[i] * net.B.data[i * p];
    close(num, direct, 'slope of the constant unit');
    await expect(meanGradient(net, { kind: 'isotropic', sigma: 1 }, new Float64Array(2))).rejects.toBeInstanceOf(NetmomentsError);
    expect(() => differenceWeights(3, 3, 0)).toThrow(NetmomentsError);
  });
});
