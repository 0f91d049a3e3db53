/**
 * The engine seam (issue 13): `analyze` without a method picks propagate on LeNet (every op has a
 * moment rule) and its numbers agree with Monte Carlo through the real model; two-stage is there
 * when asked, when --relu asks for a split, or when an op has no moment rule; a model with neither
 * a Relu to split at nor full moment-rule coverage gets an error that says what to do; a model
 * whose kinks are LeakyRelu goes through propagate (two-stage could split at it). The report carries
 * the method, its reason and the rank, and stays inside schemas/analyze.schema.json.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { analyze } from '../../src/analyze.js';
import { npyToFloat32, readNpy } from '../../src/data/npy.js';
import { NetmomentsError } from '../../src/errors.js';
import { loadModel } from '../../src/onnx/load.js';
import { cli } from '../helpers/cli.js';

const fixture = (f: string) => new URL(`../../fixtures/${f}`, import.meta.url).pathname;
const digits = npyToFloat32(readNpy(fixture('mnist/digits-100.npy')));

/**
 * Mean error in Monte Carlo output sd (MC's own standard error of a mean is 1/sqrt(s) sd) and the
 * variance ratio analytic / MC, over the outputs of every result.
 */
function againstMonteCarlo(results: { mean: number[]; variance: number[] | null; mc?: { samples: number; mean: number[]; variance: number[] } }[]) {
  const err: number[] = [];
  const ratio: number[] = [];
  for (const r of results) {
    for (let i = 0; i < r.mean.length; i++) {
      err.push(Math.abs(r.mean[i] - r.mc!.mean[i]) / Math.sqrt(r.mc!.variance[i]));
      ratio.push(r.variance![i] / r.mc!.variance[i]);
    }
  }
  return { worstErr: Math.max(...err), minRatio: Math.min(...ratio), maxRatio: Math.max(...ratio) };
}

describe('method auto on the bundled LeNet', () => {
  it('picks propagate at full rank, with no split, and agrees with 20,000-sample Monte Carlo at sigma 8', async () => {
    const model = loadModel(fixture('lenet.onnx'));
    const report = await analyze(model, digits.slice(0, 2 * 784), 2, { noise: { kind: 'isotropic', sigma: 8 }, mc: 20000, seed: 3, covariance: true });
    expect(report.method).toBe('propagate');
    expect(report.methodReason).toBe('every op has a moment rule; two-stage would hold 4 kinked layers fixed');
    expect(report.rank).toBe(784);
    expect(report.split).toBeNull();
    expect(report.linearizationPoint).toBe('none');
    for (const r of report.results) {
      expect(r.variancePaper).toBeNull();
      expect(r.linearization.expectedFlips).toEqual([]);
      expect(r.classProbabilities!.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 6);
      // the covariance's diagonal is the variance
      for (let i = 0; i < 10; i++) expect(r.covariance![i][i]).toBeCloseTo(r.variance![i], 10);
    }
    // MC standard error of a mean: 1/sqrt(20000) = 0.007 sd; of a variance ratio: sqrt(2/20000) = 0.01.
    // Measured (digits 0-1, seed 3): worst mean error 0.0088 sd, variance / MC 0.973-1.016
    const s = againstMonteCarlo(report.results);
    expect(s.worstErr).toBeLessThan(0.05);
    expect(s.minRatio).toBeGreaterThan(0.93);
    expect(s.maxRatio).toBeLessThan(1.07);
  }, 240_000);

  it('two-stage when asked, or when --relu sets a split; propagate with a --relu is a usage error', async () => {
    const model = loadModel(fixture('lenet.onnx'));
    const x = digits.slice(0, 784);
    const asked = await analyze(model, x, 1, { noise: { kind: 'isotropic', sigma: 8 }, method: 'two-stage', probabilitySamples: 0 });
    expect(asked.method).toBe('two-stage');
    expect(asked.methodReason).toMatch(/--method two-stage/);
    expect(asked.rank).toBeUndefined();
    expect(asked.split!.index).toBe(2);
    expect(asked.results[0].variancePaper).not.toBeNull();
    const relu = await analyze(model, x, 1, { noise: { kind: 'isotropic', sigma: 8 }, relu: 1, probabilitySamples: 0 });
    expect(relu.method).toBe('two-stage');
    expect(relu.methodReason).toBe('--relu sets a split point');
    expect(relu.split!.index).toBe(1);
    await expect(analyze(model, x, 1, { relu: 1, method: 'propagate' })).rejects.toThrow(/--relu sets a split point/);
  }, 120_000);

  it('an op with no moment rule: auto says so and uses two-stage; with no Relu either, the error says what to do', async () => {
    const model = loadModel(fixture('lenet.onnx'));
    const x = digits.slice(0, 784);
    const one = model.graph.clone();
    one.nodes.find((n) => n.opType === 'Relu')!.opType = 'Asinh';
    const r = await analyze({ ...model, graph: one }, x, 1, { noise: { kind: 'isotropic', sigma: 8 }, probabilitySamples: 0 });
    expect(r.method).toBe('two-stage');
    expect(r.methodReason).toBe('no moment rule for Asinh');
    const none = model.graph.clone();
    for (const n of none.nodes) if (n.opType === 'Relu') n.opType = 'Asinh';
    const err = await analyze({ ...model, graph: none }, x, 1, { noise: { kind: 'isotropic', sigma: 8 } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NetmomentsError);
    expect((err as Error).message).toMatch(
      /no Relu node to split at.*; and --method propagate has no moment rule for Asinh: analyse a tensor before it with --output NAME/,
    );
    await expect(analyze({ ...model, graph: one }, x, 1, { method: 'propagate' })).rejects.toThrow(/no moment rule for Asinh/);
  }, 120_000);

  it('a LeakyRelu LeNet goes through propagate (two-stage could split at a LeakyRelu) and agrees with Monte Carlo', async () => {
    const model = loadModel(fixture('lenet.onnx'));
    const g = model.graph.clone();
    for (const n of g.nodes) if (n.opType === 'Relu') n.opType = 'LeakyRelu'; // alpha 0.01 by default
    const report = await analyze({ ...model, graph: g }, digits.slice(784, 2 * 784), 1, { noise: { kind: 'isotropic', sigma: 8 }, mc: 20000, seed: 5 });
    expect(report.method).toBe('propagate');
    expect(report.methodReason).toBe('every op has a moment rule; two-stage would hold 4 kinked layers fixed');
    // measured (digit 1, seed 5): worst mean error 0.0143 sd, variance / MC 0.986-1.026
    const s = againstMonteCarlo(report.results);
    expect(s.worstErr).toBeLessThan(0.05);
    expect(s.minRatio).toBeGreaterThan(0.93);
    expect(s.maxRatio).toBeLessThan(1.07);
  }, 120_000);

  it('--rank sketches the factor: the report states the rank', async () => {
    const model = loadModel(fixture('lenet.onnx'));
    const report = await analyze(model, digits.slice(0, 784), 1, { noise: { kind: 'isotropic', sigma: 8 }, rank: 64, probabilitySamples: 0 });
    expect(report.method).toBe('propagate');
    expect(report.rank).toBe(64);
  }, 120_000);
});

describe('analyze CLI, default method', () => {
  it('says which method and why on stderr, and the report keys are those of the schema', async () => {
    const r = await cli(['analyze', 'fixtures/lenet.onnx', '--input', 'fixtures/mnist/digit-0.png', '--sigma', '8']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain('netmoments: method: propagate (every op has a moment rule; two-stage would hold 4 kinked layers fixed; noise factor rank 784)');
    const report = JSON.parse(r.stdout);
    const schema = JSON.parse(readFileSync(new URL('../../schemas/analyze.schema.json', import.meta.url), 'utf8'));
    for (const k of schema.required) expect(Object.keys(report)).toContain(k);
    for (const k of Object.keys(report)) expect(Object.keys(schema.properties)).toContain(k);
    expect(schema.properties.method.enum).toContain(report.method);
    const two = await cli(['analyze', 'fixtures/lenet.onnx', '--input', 'fixtures/mnist/digit-0.png', '--sigma', '8', '--at', 'input', '--quiet']);
    expect(two.code, two.stderr).toBe(0);
    expect(JSON.parse(two.stdout)).toMatchObject({ method: 'two-stage', methodReason: '--at sets a linearization point' });
  }, 120_000);
});
