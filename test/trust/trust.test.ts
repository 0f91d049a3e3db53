/** src/trust.ts: each check against hand-made numbers on both sides of its threshold, and the verdict rules. */
import { describe, expect, it } from 'vitest';
import {
  TRUST,
  assessTrust,
  compareSurrogate,
  flipTolerance,
  mcProportionHalfWidth,
  monteCarloReasons,
  smoothOpReasons,
  stateChangeReasons,
  surrogateOutputAt,
  trustVerdict,
} from '../../src/trust.js';
import { Rng } from '../../src/moments/montecarlo.js';

const mc = (mean: number[], sd: number[], flip: number, samples = 2000) => ({ samples, mean, variance: sd.map((s) => s * s), flip });

describe('Monte Carlo checks', () => {
  const mean = [10, 2, 1, -5];
  const sd = [1, 1, 1, 1];
  it('pass when the top classes agree within the effect sizes', () => {
    expect(monteCarloReasons({ mean, variance: [1.2, 1, 1, 1], flip: 0.02, mc: mc([10 + 1.9, 2, 1, -5], sd, 0.1) })).toEqual([]);
  });
  it('fail on a top-class mean off by more than meanErrorSd MC sd, naming the class', () => {
    const r = monteCarloReasons({ mean, variance: [1, 4, 1, 1], flip: 0, mc: mc([10, 2 + 2.1 * 2, 1, -5], [1, 2, 1, 1], 0) });
    expect(r).toHaveLength(1);
    expect(r[0]).toMatch(/mean of g\[1\] is 2\.10 Monte Carlo sd/);
  });
  it('compare the top classes by Monte Carlo mean and by analytic mean, no others', () => {
    // class 3 is last by MC mean but first by the analytic mean
    expect(monteCarloReasons({ mean: [10, 2, 1, 50], variance: null, flip: null, mc: mc([10, 2, 1, -5], sd, 0) })).toEqual([expect.stringMatching(/g\[3\]/)]);
    // class 3 is 4th both ways: an error there is not compared
    expect(monteCarloReasons({ mean: [10, 2, 1, -50], variance: null, flip: null, mc: mc([10, 2, 1, -5], sd, 0) })).toEqual([]);
  });
  it('fail on an sd ratio outside the allowed range, either side', () => {
    expect(monteCarloReasons({ mean, variance: [0.6 ** 2, 1, 1, 1], flip: null, mc: mc(mean, sd, 0) })[0]).toMatch(/sd of g\[0\] is 0\.60 x/);
    expect(monteCarloReasons({ mean, variance: [1, 1.6 ** 2, 1, 1], flip: null, mc: mc(mean, sd, 0) })[0]).toMatch(/sd of g\[1\] is 1\.60 x/);
    expect(monteCarloReasons({ mean, variance: [1, 1.45 ** 2, 0.7 ** 2, 1], flip: null, mc: mc(mean, sd, 0) })).toEqual([]);
  });
  it('a class that did not vary in the Monte Carlo: no sd ratio, the mean measured in the analytic sd', () => {
    // a clamped output: analytic sd 1e-4 from crossings rarer than the samples see, MC sd 0
    const still = mc([0.4, 0.4, 0.4, 0.4], [0, 0, 0, 0], 0, 256);
    expect(monteCarloReasons({ mean: [0.40001, 0.4, 0.4, 0.4], variance: [1e-8, 1e-8, 1e-8, 1e-8], flip: null, mc: still })).toEqual([]);
    // but a mean that is off by more than meanErrorSd of its own sd still fails
    const r = monteCarloReasons({ mean: [0.4005, 0.4, 0.4, 0.4], variance: [1e-8, 1e-8, 1e-8, 1e-8], flip: null, mc: still });
    expect(r).toEqual([expect.stringMatching(/mean of g\[0\] is 5\.00 analytic sd from Monte Carlo's, which did not vary/)]);
    // and an analytic sd of 0 against a Monte Carlo sd of 0 is no failure either
    expect(monteCarloReasons({ mean: [0.4, 0.4, 0.4, 0.4], variance: [0, 0, 0, 0], flip: null, mc: still })).toEqual([]);
  });
  it('fail on a flip probability off by more than max(flipTolerance, the MC interval)', () => {
    expect(monteCarloReasons({ mean, variance: null, flip: 0.05, mc: mc(mean, sd, 0.05 + TRUST.flipTolerance * 1.01) })[0]).toMatch(/flip probability/);
    expect(monteCarloReasons({ mean, variance: null, flip: 0.05, mc: mc(mean, sd, 0.05 + TRUST.flipTolerance * 0.99) })).toEqual([]);
    // with 20 samples the interval is wider than the tolerance
    expect(flipTolerance(0.5, 20)).toBeGreaterThan(0.2);
    expect(monteCarloReasons({ mean, variance: null, flip: 0.5, mc: mc(mean, sd, 0.65, 20) })).toEqual([]);
  });
});

describe('the Monte Carlo interval', () => {
  it('covers a simulated proportion about 95% of the time', () => {
    const rng = new Rng(7);
    const p = 0.1;
    const N = 400;
    let covered = 0;
    const runs = 2000;
    for (let k = 0; k < runs; k++) {
      let hits = 0;
      for (let i = 0; i < N; i++) if (rng.nextDouble() < p) hits++;
      const ph = hits / N;
      if (Math.abs(ph - p) <= mcProportionHalfWidth(ph, N) + 0.5 / N) covered++;
    }
    expect(covered / runs).toBeGreaterThan(0.93);
    expect(covered / runs).toBeLessThan(0.98);
  });
  it('stays positive at 0 and 1', () => {
    expect(mcProportionHalfWidth(0, 2000)).toBeGreaterThan(0);
    expect(mcProportionHalfWidth(1, 2000)).toBeGreaterThan(0);
  });
});

describe('state changes of the layers held fixed', () => {
  it('warn above the fraction, never for the split layer', () => {
    const layers = [
      { node: '/Relu', units: 1000, expectedFlips: 0.26 * 1000, isSplit: false },
      { node: '/MaxPool', units: 1000, expectedFlips: 0.24 * 1000, isSplit: false },
      { node: '/Relu_2', units: 10, expectedFlips: 9, isSplit: true },
    ];
    const r = stateChangeReasons(layers);
    expect(r).toHaveLength(1);
    expect(r[0]).toMatch(/26% of \/Relu's 1000 units/);
  });
});

describe('the surrogate at the input', () => {
  it('is gb + B (relu(zb + A delta) - relu(zb)) + D delta', () => {
    // p = 2, d = 2: B = [[1, 2], [3, -1]], zb = [1, -1], gb = [0.5, 0.25]
    const B = [1, 2, 3, -1];
    const zb = [1, -1];
    const gb = [0.5, 0.25];
    expect(Array.from(surrogateOutputAt(B, zb, gb))).toEqual(gb);
    // A delta = [-2, 3]: relu(zb + A delta) - relu(zb) = [0 - 1, 2 - 0] = [-1, 2]
    const g = surrogateOutputAt(B, zb, gb, [-2, 3], [0.1, -0.1]);
    expect(g[0]).toBeCloseTo(0.5 + (1 * -1 + 2 * 2) + 0.1, 12);
    expect(g[1]).toBeCloseTo(0.25 + (3 * -1 + -1 * 2) - 0.1, 12);
  });
  it('compares class and distance against the logit spread', () => {
    const model = [10, 0, -10]; // spread 20
    expect(compareSurrogate([10, 0, -10], model)).toEqual({ classDiffers: false, relativeError: 0, far: false });
    expect(compareSurrogate([10, 9, -10], model).far).toBe(false); // 9 / 20 = 0.45
    expect(compareSurrogate([10, 0, 1], model)).toMatchObject({ classDiffers: false, far: true }); // 11 / 20
    expect(compareSurrogate([0, 1, -10], model)).toMatchObject({ classDiffers: true, far: true });
  });
});

describe('the verdict', () => {
  it('is fail over warn over ok, failures listed first', () => {
    expect(trustVerdict([], [])).toEqual({ verdict: 'ok', reasons: [] });
    expect(trustVerdict([], ['w'])).toEqual({ verdict: 'warn', reasons: ['w'] });
    expect(trustVerdict(['f'], ['w'])).toEqual({ verdict: 'fail', reasons: ['f', 'w'] });
  });
  it('fails when the surrogate changes the class, warns when it is only far, and on curved ops', () => {
    const base = { mean: [1, 0], variance: [1, 1], flip: 0 };
    expect(assessTrust({ ...base, surrogate: { surrogate: [0, 1], model: [1, 0] } }).verdict).toBe('fail');
    expect(assessTrust({ ...base, surrogate: { surrogate: [1.8, 0], model: [1, 0] } })).toEqual({
      verdict: 'warn',
      reasons: [expect.stringMatching(/0\.80 of the logit spread/)],
    });
    expect(assessTrust({ ...base, smoothOps: [{ node: 's', op: 'Sigmoid' }] }).reasons[0]).toMatch(/Sigmoid 's'/);
    expect(smoothOpReasons([])).toEqual([]);
    expect(assessTrust(base).verdict).toBe('ok');
  });
  it('warns about a propagation deeper than propagateSteps non-affine steps, unless Monte Carlo of deepCheckSamples checked it', () => {
    const base = { mean: [1, 0], variance: [1, 1], flip: 0 };
    expect(assessTrust({ ...base, propagateSteps: TRUST.propagateSteps }).verdict).toBe('ok');
    const deep = assessTrust({ ...base, propagateSteps: TRUST.propagateSteps + 11 });
    expect(deep.verdict).toBe('warn');
    expect(deep.reasons[0]).toMatch(/^propagate went through 35 non-affine steps \(more than 24\).*--mc 1000$/);
    expect(assessTrust({ ...base, propagateSteps: 35, mc: mc([1, 0], [1, 1], 0) }).verdict).toBe('ok');
    // the default 256-sample check cannot resolve the errors the warning is about: it stays
    expect(assessTrust({ ...base, propagateSteps: 35, mc: mc([1, 0], [1, 1], 0, 256) }).verdict).toBe('warn');
    expect(assessTrust({ ...base, propagateSteps: 35, mc: mc([1, 0], [1, 1], 0, TRUST.deepCheckSamples) }).verdict).toBe('ok');
  });
});
