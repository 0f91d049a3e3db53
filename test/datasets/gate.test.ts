/**
 * `netmoments gate`: exit 0 when the model holds, 1 when it does not, 2 on bad input; JUnit XML
 * that parses (one testcase per threshold, failures with a message); Markdown appended to
 * $GITHUB_STEP_SUMMARY.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cli, expectBadInput } from '../helpers/cli.js';
import { digits, find, parseXml, tmp } from './helpers.js';

const dir = tmp('nm-gate-');
const data = digits(dir, 16);
const bank = join(dir, 'bank');
// the thresholds and their outputs, without the Monte Carlo check of the trust verdicts (`checked`
// false): at two k-means centres some digits' means are far off, which the check finds (its own test below)
/** The model, the digits and the 2-centre bank at sigma 8, as report and gate take them. */
const lenetAtBank = () => ['fixtures/lenet.onnx', '--data', data.data, '--labels', data.labels, '--sigma', '8', '--linearize', `bank:${bank}`];
const gate = async (extra: string[], env: Record<string, string> = {}, checked = false) =>
  await cli(['gate', ...lenetAtBank(), ...(checked ? [] : ['--trust-check', '0']), ...extra], { env });

let flipRate: number;
let accuracy: number;

beforeAll(async () => {
  expect((await cli(['bank', 'fixtures/lenet.onnx', '--data', data.data, '--k', '2', '--out-dir', bank])).code).toBe(0);
  const r = await cli(['report', ...lenetAtBank(), '--out-dir', join(dir, 'report')]);
  expect(r.code, r.stderr).toBe(0);
  const s = JSON.parse(readFileSync(join(dir, 'report', 'summary.json'), 'utf8'));
  flipRate = s.flipRate;
  accuracy = s.accuracy.underNoise;
  // the digits at two k-means centres flip often enough to test both outcomes
  expect(flipRate).toBeGreaterThan(0.01);
  expect(flipRate).toBeLessThan(0.99);
});

describe('netmoments gate', () => {
  it('passes (exit 0) with JUnit XML and a step summary when the thresholds hold', async () => {
    const junit = join(dir, 'pass.xml');
    const summary = join(dir, 'step-summary.md');
    writeFileSync(summary, '# earlier step\n');
    const r = await gate(['--max-flip-rate', String(Math.min(1, flipRate + 0.05)), '--min-accuracy', String(Math.max(0, accuracy - 0.05)), '--junit', junit], {
      GITHUB_STEP_SUMMARY: summary,
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/pass: flip rate <=/);
    const xml = parseXml(readFileSync(junit, 'utf8'));
    expect(xml.name).toBe('testsuites');
    expect(xml.attrs).toMatchObject({ tests: '3', failures: '0', errors: '0' });
    const cases = find(xml, 'testcase');
    expect(cases.map((c) => c.attrs.name)).toEqual([
      expect.stringMatching(/^flip rate <= /),
      'no input fails the trust checks',
      expect.stringMatching(/^accuracy under noise >= /),
    ]);
    expect(find(xml, 'failure')).toHaveLength(0);
    const props = Object.fromEntries(find(xml, 'property').map((p) => [p.attrs.name, p.attrs.value]));
    expect(Number(props.flipRate)).toBeCloseTo(flipRate, 12);
    expect(props.noise).toMatch(/sigma 8/);
    const md = readFileSync(summary, 'utf8');
    expect(md.startsWith('# earlier step\n')).toBe(true);
    expect(md).toMatch(/netmoments gate passed/);
    expect(md).toMatch(/\| flip rate <= .* \| pass \|/);
  });

  it('fails (exit 1) when the flip rate is too high, with a failure in the JUnit XML', async () => {
    const junit = join(dir, 'fail.xml');
    const summary = join(dir, 'fail-summary.md');
    const r = await gate(['--max-flip-rate', String(flipRate / 2), '--junit', junit, '--out-dir', join(dir, 'kept')], { GITHUB_STEP_SUMMARY: summary });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/gate failed: flip rate .* is above the maximum/);
    const xml = parseXml(readFileSync(junit, 'utf8'));
    expect(xml.attrs).toMatchObject({ tests: '2', failures: '1' });
    const failures = find(xml, 'failure');
    expect(failures).toHaveLength(1);
    expect(failures[0].attrs.message).toMatch(/flip rate \d+\.\d+% is above the maximum \d+\.\d+%/);
    expect(readFileSync(summary, 'utf8')).toMatch(/netmoments gate failed/);
    // the full report was kept
    expect(existsSync(join(dir, 'kept', 'summary.json'))).toBe(true);
  });

  it('with the default trust check, the digits whose bank centre is far off fail the trust testcase', async () => {
    const junit = join(dir, 'checked.xml');
    const r = await gate(['--max-flip-rate', '1', '--junit', junit, '--out-dir', join(dir, 'checked')], {}, true);
    expect(r.code).toBe(1);
    const s = JSON.parse(readFileSync(join(dir, 'checked', 'summary.json'), 'utf8'));
    expect(s.run.trustCheck).toEqual({ samples: 256, inputs: 10 });
    expect(s.untrusted).toBeGreaterThan(0);
    const failures = find(parseXml(readFileSync(junit, 'utf8')), 'failure');
    expect(failures.map((f) => f.attrs.message).join('\n')).toMatch(/trust/);
    expect(readFileSync(join(dir, 'checked', 'summary.md'), 'utf8')).toMatch(/mean of g\[\d\] is \d+\.\d+ Monte Carlo sd from Monte Carlo's/);
  });

  it('fails (exit 1) on --min-accuracy alone', async () => {
    const r = await gate(['--max-flip-rate', '1', '--min-accuracy', String(Math.min(1, accuracy + 0.01))]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/accuracy under noise .* is below the minimum/);
  });

  it('bad input is exit 2 with one line and no JUnit file', async () => {
    const junit = join(dir, 'bad.xml');
    expectBadInput(await gate(['--max-flip-rate', '1.5', '--junit', junit]), '', /--max-flip-rate is a fraction in \[0, 1\]/);
    const noLabels = await cli([
      'gate',
      'fixtures/lenet.onnx',
      '--data',
      data.data,
      '--sigma',
      '8',
      '--linearize',
      `bank:${bank}`,
      '--max-flip-rate',
      '0.1',
      '--min-accuracy',
      '0.9',
      '--junit',
      junit,
    ]);
    expectBadInput(noLabels, data.data, /--min-accuracy needs labels/);
    const missing = join(dir, 'nope.npy');
    expectBadInput(await cli(['gate', 'fixtures/lenet.onnx', '--data', missing, '--max-flip-rate', '0.1', '--junit', junit]), missing, /no such file/);
    expect((await cli(['gate', 'fixtures/lenet.onnx', '--data', data.data, '--labels', data.labels])).code).toBe(2); // --max-flip-rate is required
    expect(existsSync(junit)).toBe(false);
  });
});
