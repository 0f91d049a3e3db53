import { describe, expect, it } from 'vitest';
import { Phi, Phi2, PhiInv, millsComplement, phi } from '../../src/moments/special.js';
import { integrate, integratePieces, npdf } from './integrate.js';

// Reference values computed with mpmath at 40 digits (mp.ncdf, mp.npdf), rounded to 17 digits.
const PHI_TABLE: [number, number, number][] = [
  [-37.5, 4.6053530095819548e-308, 1.7282337322841052e-306],
  [-37, 5.7255712225245768e-300, 2.1200065515246056e-298],
  [-30, 4.9067139271481871e-198, 1.4736461348785475e-196],
  [-20, 2.7536241186062337e-89, 5.5209483621597632e-88],
  [-10, 7.6198530241605261e-24, 7.6945986267064193e-23],
  [-8.5, 9.4795348222033184e-18, 8.16623563166955e-17],
  [-6, 9.8658764503769814e-10, 6.0758828498232855e-9],
  [-5, 2.8665157187919391e-7, 1.4867195147342977e-6],
  [-3, 0.0013498980316300945, 0.0044318484119380072],
  [-1, 0.15865525393145705, 0.24197072451914335],
  [-0.5, 0.3085375387259869, 0.35206532676429948],
  [0, 0.5, 0.39894228040143268],
  [0.3, 0.61791142218895263, 0.38138781546052409],
  [1, 0.84134474606854295, 0.24197072451914335],
  [2, 0.97724986805182079, 0.053990966513188052],
  [5, 0.99999971334842812, 1.4867195147342977e-6],
  [8, 0.99999999999999938, 5.0522710835368923e-15],
];

describe('Phi and phi', () => {
  it('keep full relative accuracy in both tails (max relative error 4e-16 against 40-digit values)', () => {
    for (const [x, P, p] of PHI_TABLE) {
      expect(Math.abs(Phi(x) - P) / P, `Phi(${x})`).toBeLessThan(4e-16);
      expect(Math.abs(phi(x) - p) / p, `phi(${x})`).toBeLessThan(4e-16);
      // the upper tail 1 - Phi(x) = Phi(-x) is computed directly, never as a difference
      expect(Math.abs(Phi(-x) + P - 1), `Phi(${-x}) + Phi(${x})`).toBeLessThan(2.3e-16);
    }
  });

  it('are not 1 - erf: a naive complement underflows far before x = -37', () => {
    // A sanity anchor for the property the table checks: Phi(-37) is 5.7e-300, not 0.
    expect(Phi(-37)).toBeGreaterThan(5e-300);
    expect(Phi(-40)).toBe(0);
    expect(Phi(40)).toBe(1);
    expect(Phi(Number.NEGATIVE_INFINITY)).toBe(0);
    expect(Phi(Number.POSITIVE_INFINITY)).toBe(1);
    expect(Number.isNaN(Phi(Number.NaN))).toBe(true);
  });

  it('Phi matches the integral of the density (adaptive Gauss-Kronrod)', () => {
    for (const x of [-12, -4.2, -1.3, -0.2, 0.6, 2.5, 7]) {
      const ref = x < 0 ? integrate(npdf, -40, x, 1e-14) : 1 - integrate(npdf, x, 40, 1e-14);
      expect(Math.abs(Phi(x) - ref) / ref).toBeLessThan(1e-13);
    }
  });

  it('millsComplement 1 - y R(y) has no cancellation (40-digit references)', () => {
    const ref: [number, number][] = [
      [0.5, 0.56181777177315383],
      [3, 0.086229103869690113],
      [6, 0.025734034618795229],
      [10, 0.009714035282680786],
      [30, 0.0011074278250835985],
    ];
    for (const [y, g] of ref) expect(Math.abs(millsComplement(y) - g) / g, `y=${y}`).toBeLessThan(5e-15);
  });

  it('PhiInv inverts Phi (AS 241) down to p = 1e-300', () => {
    const ref: [number, number][] = [
      [1e-300, -37.047096299361199],
      [1e-50, -14.933337534788489],
      [1e-20, -9.2623400897984076],
      [1e-10, -6.3613409024040562],
      [0.001, -3.0902323061678135],
      [0.025, -1.9599639845400542],
      [0.3, -0.52440051270804078],
      [0.5, 0],
      [0.9, 1.2815515655446006],
      // for p near 1 the reference is for the double nearest 0.999999 (1 - p is only that accurate)
      [0.999999, 4.7534243088170878],
    ];
    for (const [p, x] of ref) expect(Math.abs(PhiInv(p) - x), `p=${p}`).toBeLessThan(1e-14 * Math.max(1, Math.abs(x)));
    expect(PhiInv(0)).toBe(-Infinity);
    expect(PhiInv(1)).toBe(Infinity);
    expect(Number.isNaN(PhiInv(1.5))).toBe(true);
  });
});

/**
 * Independent reference: Phi2(h, k; rho) = int_{-inf}^h phi(x) Phi((k - rho x)/r) dx, integrated by
 * adaptive Gauss-Kronrod with the interval split where the inner Phi switches (x = k / rho).
 */
function phi2Reference(h: number, k: number, rho: number): number {
  if (h === -Infinity || k === -Infinity) return 0;
  if (h === Infinity) return Phi(k);
  if (k === Infinity) return Phi(h);
  if (rho === 1) return Phi(Math.min(h, k));
  if (rho === -1) return Math.max(0, Phi(h) + Phi(k) - 1);
  const r = Math.sqrt((1 - rho) * (1 + rho));
  const f = (x: number) => npdf(x) * Phi((k - rho * x) / r);
  const hi = Math.min(h, 40);
  const lo = -40;
  if (hi <= lo) return 0;
  const pts = [lo, hi];
  if (rho !== 0) {
    const t = k / rho;
    for (const q of [t - 8 * r, t, t + 8 * r]) if (q > lo && q < hi) pts.push(q);
  }
  return integratePieces(f, pts, 1e-15, 1e-18);
}

describe('Phi2 (Genz 2004 / Drezner-Wesolowsky)', () => {
  const limits = [-Infinity, -40, -8, -3, -1, 0, 0.7, 2, 5, 40, Infinity];
  const rhos = [-1, -0.999, -0.95, -0.925, -0.9, -0.5, -0.2, 0, 0.2, 0.5, 0.8, 0.925, 0.95, 0.999, 1];

  it('matches the numerically integrated reference to 1e-14 absolute on the grid (limits to +-40 and +-Infinity)', () => {
    let worst = 0;
    for (const rho of rhos) {
      for (const h of limits) {
        for (const k of limits) {
          const v = Phi2(h, k, rho);
          const ref = phi2Reference(h, k, rho);
          const e = Math.abs(v - ref);
          worst = Math.max(worst, e);
          if (e > 1e-14) expect.fail(`Phi2(${h}, ${k}; ${rho}) = ${v}, reference ${ref}`);
        }
      }
    }
    expect(worst).toBeLessThan(1e-14);
  });

  it('is continuous into rho = +-1 and symmetric in (h, k)', () => {
    for (const [h, k] of [
      [0.3, 0.3],
      [-1, 2],
      [1.5, -0.5],
      [-2, -2.1],
    ]) {
      expect(Math.abs(Phi2(h, k, 1 - 1e-13) - Phi2(h, k, 1))).toBeLessThan(1e-6);
      expect(Math.abs(Phi2(h, k, -1 + 1e-13) - Phi2(h, k, -1))).toBeLessThan(1e-6);
      for (const rho of [-0.97, -0.3, 0.6, 0.97]) expect(Phi2(h, k, rho)).toBeCloseTo(Phi2(k, h, rho), 15);
    }
    // rho outside [-1, 1] by rounding is clamped
    expect(Phi2(0.2, -0.1, 1 + 1e-15)).toBe(Phi2(0.2, -0.1, 1));
    expect(Number.isNaN(Phi2(Number.NaN, 0, 0))).toBe(true);
  });

  it('has the closed forms at rho = 0 and at the origin', () => {
    expect(Phi2(0.4, -1.2, 0)).toBeCloseTo(Phi(0.4) * Phi(-1.2), 16);
    for (const rho of [-0.99, -0.6, 0.1, 0.93, 0.999]) {
      // Sheppard: Phi2(0, 0; rho) = 1/4 + asin(rho) / (2 pi)
      expect(Math.abs(Phi2(0, 0, rho) - (0.25 + Math.asin(rho) / (2 * Math.PI)))).toBeLessThan(2e-16);
    }
  });
});
