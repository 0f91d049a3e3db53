/**
 * Sharded runs: `report --shard I/N` on every shard, then `merge`, gives the unsharded report byte
 * for byte (LeNet with a k-means bank, Monte Carlo columns included; and a per-input run), and
 * merge refuses incomplete or mixed shard sets.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { expectBadInput, cli } from '../helpers/cli.js';
import { digits, residualData, tmp } from './helpers.js';

const FILES = ['samples.csv', 'summary.json', 'summary.md'];
const dir = tmp('nm-shard-');
const lenet = digits(dir, 40);
const bank = join(dir, 'bank');
const read = (out: string) => Object.fromEntries(FILES.map((f) => [f, readFileSync(join(out, f), 'utf8')]));
const reportArgs = (out: string, extra: string[] = []) => [
  'report',
  'fixtures/lenet.onnx',
  '--data',
  lenet.data,
  '--labels',
  lenet.labels,
  '--sigma',
  '8',
  '--linearize',
  `bank:${bank}`,
  '--chunk',
  '8',
  '--per-logit',
  '--mc',
  '300',
  '--mc-inputs',
  '3',
  '--out-dir',
  out,
  ...extra,
];

beforeAll(async () => {
  const r = await cli(['bank', 'fixtures/lenet.onnx', '--data', lenet.data, '--k', '3', '--out-dir', bank]);
  expect(r.code, r.stderr).toBe(0);
});

describe('report --shard and merge', () => {
  it('LeNet with a bank: 3 shards merged == the unsharded report, byte for byte', async () => {
    const whole = join(dir, 'whole');
    const r = await cli(reportArgs(whole));
    expect(r.code, r.stderr).toBe(0);
    const shards = [0, 1, 2].map((i) => join(dir, `shard-${i}`));
    for (const [i, out] of shards.entries()) {
      const s = await cli(reportArgs(out, ['--shard', `${i}/3`]));
      expect(s.code, s.stderr).toBe(0);
      const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
      expect(summary.schema).toBe('netmoments.report/1');
      expect(summary.shard).toMatchObject({ index: i, count: 3 });
      expect(existsSync(join(out, 'records.ndjson'))).toBe(true);
    }
    const sizes = shards.map((out) => JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')).inputs);
    expect(sizes.reduce((a: number, b: number) => a + b, 0)).toBe(40);
    const merged = join(dir, 'merged');
    const m = await cli(['merge', shards[2], shards[0], shards[1], '--out-dir', merged]);
    expect(m.code, m.stderr).toBe(0);
    expect(read(merged)).toEqual(read(whole));
    expect(existsSync(join(merged, 'records.ndjson'))).toBe(false);
    const summary = JSON.parse(readFileSync(join(merged, 'summary.json'), 'utf8'));
    expect(summary.tightness.inputs).toBe(3);
    expect(summary.linearization).toMatchObject({ mode: 'bank', k: 3 });
  });

  it('per-input linearization: 2 shards merged == unsharded', async () => {
    const res = residualData(dir, 12, 5);
    const args = (out: string, extra: string[] = []) => [
      'report',
      'fixtures/residual.onnx',
      '--data',
      res.data,
      '--labels',
      res.labels,
      '--sigma',
      '0.1',
      '--chunk',
      '3',
      '--out-dir',
      out,
      ...extra,
    ];
    expect((await cli(args(join(dir, 'res-whole')))).code).toBe(0);
    expect((await cli(args(join(dir, 'res-0'), ['--shard', '0/2']))).code).toBe(0);
    expect((await cli(args(join(dir, 'res-1'), ['--shard', '1/2']))).code).toBe(0);
    expect((await cli(['merge', join(dir, 'res-0'), join(dir, 'res-1'), '--out-dir', join(dir, 'res-merged'), '--html'])).code).toBe(0);
    expect(read(join(dir, 'res-merged'))).toEqual(read(join(dir, 'res-whole')));
    // merge --html: the page of the merged report, its flip rate as the unsharded summary.json has it
    const whole = JSON.parse(readFileSync(join(dir, 'res-whole', 'summary.json'), 'utf8'));
    const html = readFileSync(join(dir, 'res-merged', 'report.html'), 'utf8');
    expect(html).toContain(`id="flip-rate" class="n" data-value="${JSON.stringify(whole.flipRate)}"`);
    expect(html.match(/<tr class="class-row">/g)).toHaveLength(whole.perClass.length);
  });

  it('merge refuses a missing shard, a shard twice, a shard of another run, and a whole report (exit 2, one line)', async () => {
    const s = (i: number) => join(dir, `shard-${i}`);
    expectBadInput(await cli(['merge', s(0), s(1), '--out-dir', join(dir, 'm1')]), '', /shard\(s\) 2\/3 missing/);
    expectBadInput(await cli(['merge', s(0), s(1), s(1), '--out-dir', join(dir, 'm2')]), s(1), /is shard 1\/3, and so is/);
    expectBadInput(await cli(['merge', s(0), s(1), join(dir, 'res-1'), '--out-dir', join(dir, 'm3')]), join(dir, 'res-1'), /another run/);
    expectBadInput(await cli(['merge', join(dir, 'whole'), '--out-dir', join(dir, 'm4')]), join(dir, 'whole'), /not of a shard/);
    for (const m of ['m1', 'm2', 'm3', 'm4']) expect(existsSync(join(dir, m))).toBe(false);
    // a shard whose samples.csv was damaged after the run
    rmSync(join(s(2), 'samples.csv'));
    expectBadInput(await cli(['merge', s(0), s(1), s(2), '--out-dir', join(dir, 'm5')]), s(2), /does not match summary.json/);
  });

  it('--shard with kmeans:K asks for a bank built once; a bad --shard is a usage error', async () => {
    const r = await cli(['report', 'fixtures/lenet.onnx', '--data', lenet.data, '--linearize', 'kmeans:3', '--shard', '0/2', '--out-dir', join(dir, 'x')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/build the bank once .*--linearize bank:BANK/);
    const b = await cli(['report', 'fixtures/lenet.onnx', '--data', lenet.data, '--shard', '2/2', '--out-dir', join(dir, 'y')]);
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(/--shard expects I\/N with 0 <= I < N/);
  });
});
