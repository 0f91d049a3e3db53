/**
 * Trust verdicts end to end on the bundled LeNet (two-stage, split at its last ReLU with --relu 2):
 * sigma 8 is "ok" with and without Monte Carlo; sigma 100 is "warn" or "fail" without it and
 * "fail" with --mc 2000 (docs/RESULTS.md, "Trust verdicts"). Reports carry the verdict per input and
 * the trusted flip rate; the gate fails on untrusted inputs unless --allow-untrusted, and on analytic
 * and Monte Carlo flip rates that disagree.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli, expectBadInput } from '../helpers/cli.js';
import { digits, readCsv, tmp } from '../datasets/helpers.js';
import { encodeNpy } from '../../src/data/npy.js';
import { TRUST } from '../../src/trust.js';
import { fcNet } from '../onnx/models.js';

const LENET = 'fixtures/lenet.onnx';
const dir = tmp('nm-trust-');

async function analyze(sigma: number, mc: number) {
  const out = join(dir, `a-${sigma}-${mc}.json`);
  const r = await cli(['analyze', LENET, '--input', 'fixtures/mnist/digit-0.npy', '--relu', '2', '--sigma', String(sigma), '--mc', String(mc), '--out', out]);
  expect(r.code, r.stderr).toBe(0);
  return { report: JSON.parse(readFileSync(out, 'utf8')), stderr: r.stderr };
}

describe('analyze: the verdict per input', () => {
  it('LeNet at sigma 8 is ok, with and without --mc 2000, and says so first', async () => {
    for (const mc of [0, 2000]) {
      const { report, stderr } = await analyze(8, mc);
      expect(report.results[0].trust).toEqual({ verdict: 'ok', reasons: [] });
      // without --mc the verdict stands on the default 256-sample Monte Carlo check, and says so
      expect(stderr).toMatch(
        mc ? /\n {2}input 0: trust ok\n {4}clean class 2/ : /\n {2}input 0: trust ok \(checked against 256 Monte Carlo samples\)\n {4}clean class 2/,
      );
      if (mc) expect(report.results[0].mc.flipRate).toBe(0);
      if (mc) expect(report.results[0].trustCheck).toBeUndefined();
      else expect(report.results[0].trustCheck.samples).toBe(256);
    }
  }, 120_000);

  it('--trust-check takes 0 or a whole number of at least 2, else one usage line and no report', async () => {
    for (const [cmd, bad] of [
      ['analyze', '1'],
      ['analyze', '-3'],
      ['report', '1'],
    ]) {
      const out = join(dir, `bad-check-${cmd}-${bad}`);
      const args =
        cmd === 'analyze'
          ? ['analyze', LENET, '--trust-check', bad, '--out', out]
          : ['report', LENET, '--data', 'fixtures/mnist/digit-0.npy', '--trust-check', bad, '--out-dir', out];
      expectBadInput(await cli(args), '', /--trust-check must be/);
      expect(existsSync(out)).toBe(false);
    }
  });

  it('LeNet at sigma 100 is warn without Monte Carlo (the held-fixed layers) and fail with --mc 2000', async () => {
    const plain = await analyze(100, 0);
    expect(['warn', 'fail']).toContain(plain.report.results[0].trust.verdict);
    expect(plain.report.results[0].trust.reasons.join('\n')).toMatch(/expected to change the state of \d+% of \/MaxPool's 2880 units/);
    expect(plain.stderr).toMatch(/input 0: trust (WARN|FAIL): /);
    const withMc = await analyze(100, 2000);
    const t = withMc.report.results[0].trust;
    expect(t.verdict).toBe('fail');
    expect(t.reasons.join('\n')).toMatch(/Monte Carlo sd from Monte Carlo's/);
    expect(t.reasons.join('\n')).toMatch(/flip probability 0\.\d+ against Monte Carlo's 0\.\d+/);
    expect(withMc.report.results[0].mc.flipRate).toBeGreaterThan(0.2);
    expect(withMc.stderr).toMatch(/input 0: trust FAIL: /);
  }, 120_000);
});

describe('report and gate', () => {
  const data = digits(dir, 8);
  // two-stage: what these verdicts judge (propagate, the default, agrees with Monte Carlo even at sigma 100)
  const common = ['--method', 'two-stage', '--data', data.data, '--labels', data.labels, '--mc', '500', '--mc-inputs', '2'];

  it('samples.csv has a trust column, summary.json the trusted flip rate and the untrusted count', async () => {
    const out = join(dir, 'r100');
    const r = await cli(['report', LENET, ...common, '--sigma', '100', '--out-dir', out]);
    expect(r.code, r.stderr).toBe(0);
    const rows = readCsv(join(out, 'samples.csv'));
    const header = readFileSync(join(out, 'samples.csv'), 'utf8').split('\n')[0].split(',');
    expect(header).toContain('trust');
    const verdicts = readFileSync(join(out, 'samples.csv'), 'utf8')
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => l.split(',')[header.indexOf('trust')]);
    // the two inputs with Monte Carlo are contradicted by it at sigma 100
    const sampled = rows.map((row, k) => (row.mc_samples ? verdicts[k] : null)).filter((v) => v !== null);
    expect(sampled).toEqual(['fail', 'fail']);
    const s = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    expect(s.untrusted).toBe(verdicts.filter((v) => v === 'fail').length);
    expect(s.trust.ok + s.trust.warn + s.trust.fail).toBe(8);
    const trusted = rows.filter((_, k) => verdicts[k] !== 'fail');
    expect(s.trustedFlipRate).toBeCloseTo(trusted.reduce((a, row) => a + row.flip_probability!, 0) / trusted.length, 9);
    expect(s.bankFallbacks).toBeNull();
    expect(readFileSync(join(out, 'summary.md'), 'utf8')).toMatch(/## Trust[\s\S]*\| fail \| .*Monte Carlo/);
  }, 180_000);

  it('gate fails (exit 1) on untrusted inputs and on disagreeing flip rates; --allow-untrusted lifts only the first', async () => {
    const gate = async (extra: string[]) => await cli(['gate', LENET, ...common, '--sigma', '100', '--max-flip-rate', '1', ...extra]);
    const r = await gate([]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/FAIL: \d of 8 inputs failed the trust checks/);
    expect(r.stderr).toMatch(/FAIL: the analytic flip rate .* and Monte Carlo's .* differ by/);
    const allowed = await gate(['--allow-untrusted']);
    expect(allowed.code).toBe(1);
    expect(allowed.stderr).toMatch(/pass: inputs whose numbers failed the trust checks \(allowed\)/);
    expect(allowed.stderr).toMatch(/FAIL: the analytic flip rate/);
  }, 180_000);

  it('gate at sigma 8 on LeNet digits passes, Monte Carlo check included', async () => {
    const r = await cli(['gate', LENET, ...common, '--sigma', '8', '--max-flip-rate', '0.02']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/pass: no input fails the trust checks \(measured 0\)/);
    expect(r.stderr).toMatch(/pass: analytic and Monte Carlo flip rates agree within 10\.000%/);
  }, 180_000);
});

describe('report: the deep-propagation warning reaches the per-sample verdicts', () => {
  it('a 26-layer MLP through propagate: every sample warns, naming the depth', async () => {
    const model = join(dir, 'deep-mlp.onnx');
    writeFileSync(
      model,
      fcNet(
        6,
        Array.from({ length: TRUST.propagateSteps + 2 }, () => 5),
        3,
        7,
      ),
    );
    const data = join(dir, 'deep-mlp-x.npy');
    writeFileSync(
      data,
      encodeNpy(
        Float32Array.from({ length: 4 * 6 }, (_, i) => Math.sin(i)),
        [4, 6],
      ),
    );
    const out = join(dir, 'deep-report');
    const r = await cli(['report', model, '--data', data, '--sigma', '0.1', '--method', 'propagate', '--out-dir', out]);
    expect(r.code, r.stderr).toBe(0);
    const header = readFileSync(join(out, 'samples.csv'), 'utf8').split('\n')[0].split(',');
    const verdicts = readFileSync(join(out, 'samples.csv'), 'utf8')
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => l.split(',')[header.indexOf('trust')]);
    expect(verdicts.length).toBeGreaterThan(0);
    expect(new Set(verdicts)).toEqual(new Set(['warn']));
    expect(JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')).trust.warn).toBe(verdicts.length);
    expect(readFileSync(join(out, 'summary.md'), 'utf8')).toMatch(/\| 0 \| warn \| propagate went through 26 non-affine steps \(more than 24\)/);
  }, 120_000);
});
