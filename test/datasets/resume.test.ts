/**
 * `report` checkpoints: a run killed with SIGKILL or SIGINT at any point leaves the previous
 * complete outputs or a resumable checkpoint (never a samples.csv that summary.json does not
 * vouch for), and --resume finishes with the same bytes as an uninterrupted run.
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cli } from '../helpers/cli.js';
import { residualData, startCli, tmp, waitFor } from './helpers.js';

const FILES = ['samples.csv', 'summary.json', 'summary.md'];
const dir = tmp('nm-resume-');
const { data, labels } = residualData(dir, 60);
const args = (out: string, sigma = '0.1') => [
  'report',
  'fixtures/residual.onnx',
  '--data',
  data,
  '--labels',
  labels,
  '--sigma',
  sigma,
  '--chunk',
  '3',
  '--per-logit',
  '--out-dir',
  out,
];
const ckOf = (out: string) => join(out, '.netmoments-checkpoint');
const chunksIn = (out: string) => (existsSync(ckOf(out)) ? readdirSync(ckOf(out)).filter((f) => /^chunk-\d+\.ndjson$/.test(f)).length : 0);
const read = (out: string) => Object.fromEntries(FILES.map((f) => [f, readFileSync(join(out, f), 'utf8')]));

/** What a kill may leave: a checkpoint to resume, or outputs whose summary.json vouches for samples.csv. */
function expectConsistent(out: string): 'checkpoint' | 'complete' | 'nothing' {
  if (existsSync(join(ckOf(out), 'state.json'))) return 'checkpoint';
  if (!existsSync(join(out, 'summary.json'))) {
    expect(existsSync(join(out, 'samples.csv'))).toBe(false);
    return 'nothing';
  }
  const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
  const csv = readFileSync(join(out, 'samples.csv'));
  expect(createHash('sha256').update(csv).digest('hex')).toBe(summary.files['samples.csv'].sha256);
  expect(csv.toString().trim().split('\n').length - 1).toBe(summary.inputs);
  return 'complete';
}

let reference: Record<string, string>;

beforeAll(async () => {
  const out = join(dir, 'reference');
  const r = await cli(args(out));
  expect(r.code, r.stderr).toBe(0);
  reference = read(out);
  expect(existsSync(ckOf(out))).toBe(false);
});

describe('report --resume', () => {
  it('after SIGKILL mid-run: a checkpoint and no outputs; --resume redoes nothing and gives the same bytes', async () => {
    const out = join(dir, 'sigkill');
    const { child, done } = startCli(args(out));
    expect(await waitFor(() => chunksIn(out) >= 4, 90_000)).toBe(true);
    child.kill('SIGKILL');
    const end = await done;
    expect(end.signal).toBe('SIGKILL');
    expect(expectConsistent(out)).toBe('checkpoint');
    expect(existsSync(join(out, 'samples.csv'))).toBe(false);
    const saved = chunksIn(out);
    // --html writes report.html beside the outputs and changes none of their bytes
    const r = await cli([...args(out), '--resume', '--html']);
    expect(r.code, r.stderr).toBe(0);
    const html = readFileSync(join(out, 'report.html'), 'utf8');
    expect(html).toContain(`id="flip-rate" class="n" data-value="${JSON.stringify(JSON.parse(reference['summary.json']).flipRate)}"`);
    const m = /(\d+) computed in [\d.]+ s.*\((\d+) from the checkpoint\)/.exec(r.stderr);
    expect(m, r.stderr).not.toBeNull();
    expect(Number(m![2])).toBe(saved * 3);
    expect(Number(m![1]) + Number(m![2])).toBe(60);
    expect(read(out)).toEqual(reference);
    expect(existsSync(ckOf(out))).toBe(false);
  });

  it('after SIGINT: exit 130 and a line naming the checkpoint; --resume gives the same bytes', async () => {
    const out = join(dir, 'sigint');
    const { child, done } = startCli(args(out));
    expect(await waitFor(() => chunksIn(out) >= 2, 90_000)).toBe(true);
    child.kill('SIGINT');
    const end = await done;
    expect(end.code).toBe(130);
    expect(end.stderr).toMatch(/interrupted; \d+ of 60 inputs are checkpointed in .*\.netmoments-checkpoint: run the same command with --resume/);
    expect(expectConsistent(out)).toBe('checkpoint');
    const r = await cli([...args(out), '--resume']);
    expect(r.code, r.stderr).toBe(0);
    expect(read(out)).toEqual(reference);
  });

  it('killed at several points over earlier complete outputs: always the old outputs intact or a checkpoint; then --resume', async () => {
    const out = join(dir, 'over-old');
    // complete outputs of another run (other noise) in the folder first
    expect((await cli(args(out, '0.05'))).code).toBe(0);
    const old = read(out);
    const delays = [0, 1000, 2200];
    for (const ms of delays) {
      const { child, done } = startCli([...args(out), '--resume']);
      await new Promise((r) => setTimeout(r, ms));
      child.kill(ms === 1000 ? 'SIGINT' : 'SIGKILL');
      await done;
      const state = expectConsistent(out);
      if (state === 'complete') {
        const now = read(out);
        // either the old run's outputs untouched, or the new run finished completely
        expect([JSON.stringify(old), JSON.stringify(reference)]).toContain(JSON.stringify(now));
      }
    }
    const r = await cli([...args(out), '--resume']);
    expect(r.code, r.stderr).toBe(0);
    expect(read(out)).toEqual(reference);
    // --resume of a finished run does nothing and says so
    const again = await cli([...args(out), '--resume']);
    expect(again.code).toBe(0);
    expect(again.stderr).toMatch(/already holds the complete report/);
    expect(read(out)).toEqual(reference);
  });

  it('--resume with other options refuses the checkpoint (exit 2, one line naming the folder)', async () => {
    const out = join(dir, 'mismatch');
    const { child, done } = startCli(args(out));
    expect(await waitFor(() => chunksIn(out) >= 1, 90_000)).toBe(true);
    child.kill('SIGKILL');
    await done;
    const r = await cli([...args(out, '0.2'), '--resume']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(out);
    expect(r.stderr).toMatch(/checkpoint here belongs to a run with other options/);
    // without --resume the old checkpoint is replaced, and the run completes
    const fresh = await cli(args(out));
    expect(fresh.code, fresh.stderr).toBe(0);
    expect(fresh.stderr).toMatch(/discarding the checkpoint/);
    expect(read(out)).toEqual(reference);
  });
});
