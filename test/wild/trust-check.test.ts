/**
 * The Monte Carlo check behind analyze's trust verdict (--trust-check, default 256 samples) on a
 * third-party model where moments through every layer are far off: the ACAS Xu net of
 * ../shared/wild (MATLAB export, opset 8; five inputs, six ReLU layers of 50 units). At the zero
 * input with sigma 0.1, every hidden layer's pre-activations are functions of the same five input
 * directions, and the Gaussian closure with residuals independent between units (src/propagate)
 * misses how their nonlinear parts cancel: the propagated means and sds are far from the model's.
 * An independent Monte Carlo (the original file through onnxruntime, one sample per run in its own
 * [1, 1, 1, 5] shape) says by how much; the default analyze must then say "fail", from its check,
 * and name the Monte Carlo. Skipped when ../shared/wild is absent.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeNpy } from '../../src/data/npy.js';
import { Rng } from '../../src/moments/montecarlo.js';
import { ModelSession } from '../../src/runtime/session.js';
import { cli, ROOT } from '../helpers/cli.js';
import { tmp } from '../datasets/helpers.js';

const ACASXU = join(ROOT, '..', 'shared', 'wild', '09-acasxu-matlab-opset8.onnx');
const SIGMA = 0.1;

/** Mean and variance of the model's first output over `samples` draws of x ~ N(0, sigma^2 I), one run each. */
async function independentMonteCarlo(samples: number): Promise<{ mean: Float64Array; variance: Float64Array }> {
  const session = await ModelSession.create(new Uint8Array(readFileSync(ACASXU)), { threads: 1 });
  const rng = new Rng(2026);
  let sum: Float64Array | undefined;
  let sq: Float64Array | undefined;
  for (let k = 0; k < samples; k++) {
    const x = new Float32Array(5);
    for (let i = 0; i < 5; i++) x[i] = SIGMA * rng.normal();
    const out = await session.run({ input: { type: 'float32', data: x, dims: [1, 1, 1, 5] } });
    const y = Object.values(out)[0].data as Float32Array;
    sum ??= new Float64Array(y.length);
    sq ??= new Float64Array(y.length);
    for (let i = 0; i < y.length; i++) {
      sum[i] += y[i];
      sq[i] += y[i] * y[i];
    }
  }
  await session.release();
  const mean = sum!.map((s) => s / samples);
  return { mean, variance: sq!.map((s, i) => s / samples - mean[i] * mean[i]) };
}

describe.skipIf(!existsSync(ACASXU))('the trust verdict checks itself by Monte Carlo (../shared/wild/09-acasxu-matlab-opset8)', () => {
  it('propagate is far off at sigma 0.1, and the default analyze says "fail" from its 256-sample check', async () => {
    const out = join(tmp('nm-trust-check-'), 'acasxu.json');
    const r = await cli(['analyze', ACASXU, '--sigma', String(SIGMA), '--out', out]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(readFileSync(out, 'utf8'));
    expect(report.method).toBe('propagate');
    const res = report.results[0];
    // how far off, by 2,000 samples of the original model (standard error 0.022 sd)
    const mc = await independentMonteCarlo(2000);
    let worstMean = 0;
    let worstSdRatio = 1;
    for (let j = 0; j < mc.mean.length; j++) {
      const sd = Math.sqrt(mc.variance[j]);
      worstMean = Math.max(worstMean, Math.abs(res.mean[j] - mc.mean[j]) / sd);
      worstSdRatio = Math.max(worstSdRatio, Math.sqrt(res.variance[j]) / sd);
    }
    expect(worstMean).toBeGreaterThan(5);
    expect(worstSdRatio).toBeGreaterThan(3);
    // the check ran (no --mc), agrees with the independent Monte Carlo, and fails the result
    expect(res.mc).toBeUndefined();
    expect(res.trustCheck.samples).toBe(256);
    for (let j = 0; j < mc.mean.length; j++) expect(Math.abs(res.trustCheck.mean[j] - mc.mean[j])).toBeLessThan(0.3 * Math.sqrt(mc.variance[j]));
    expect(res.trust.verdict).toBe('fail');
    expect(res.trust.reasons.join('\n')).toMatch(/Monte Carlo sd from Monte Carlo's/);
    expect(r.stderr).toMatch(/trust FAIL: .*\(checked against 256 Monte Carlo samples; --mc 2000 prints the comparison\)/);
  }, 120_000);

  it('report and sweep check the verdicts of their --mc-inputs inputs the same way, and fail them', async () => {
    const dir = tmp('nm-trust-check-data-');
    const data = join(dir, 'x.npy');
    writeFileSync(
      data,
      encodeNpy(
        Float32Array.from({ length: 6 * 5 }, (_, i) => 0.05 * Math.sin(i)),
        [6, 1, 1, 5],
      ),
    );
    const r = await cli(['report', ACASXU, '--data', data, '--sigma', String(SIGMA), '--out-dir', join(dir, 'report'), '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(readFileSync(join(dir, 'report', 'summary.json'), 'utf8'));
    expect(s.run.trustCheck).toEqual({ samples: 256, inputs: 6 });
    expect(s.untrusted).toBe(6);
    expect(readFileSync(join(dir, 'report', 'summary.md'), 'utf8')).toMatch(/Monte Carlo check of 256 samples/);
    const w = await cli(['sweep', ACASXU, '--data', data, '--sigma', '0.01,0.1', '--out-dir', join(dir, 'sweep'), '--quiet']);
    expect(w.code, w.stderr).toBe(0);
    const sw = JSON.parse(readFileSync(join(dir, 'sweep', 'sweep.json'), 'utf8'));
    expect(sw.run).toMatchObject({ mc: 0, mcInputs: 6, trustCheck: 256 });
    for (const p of sw.points) expect(p.untrusted).toBeGreaterThan(0);
  }, 120_000);
});
