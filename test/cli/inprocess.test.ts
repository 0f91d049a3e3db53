/**
 * test/helpers/cli.ts's `cli` (main() in the test process, which most CLI tests use because it
 * skips the 0.4 CPU-seconds of starting node and loading the CLI) against `runCli` (node
 * bin/netmoments.js in a child process, what a user runs): the same exit code, stdout and stderr
 * for a help text, the version, a usage error, a bad input, a check that fails (exit 1) and a
 * run that writes a file in the working folder; and the in-process run leaves the test process as
 * it found it (working folder, exit code, environment, console).
 */
import { mkdtempSync, readFileSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, runCli, cli } from '../helpers/cli.js';
import { residualData } from '../datasets/helpers.js';

describe('the CLI in-process and in a child process agree', () => {
  const dir = mkdtempSync(join(tmpdir(), 'nm-inprocess-'));
  symlinkSync(join(ROOT, 'fixtures'), join(dir, 'fixtures'));

  const cases: Array<{ what: string; args: string[]; code: number; cwd?: string }> = [
    { what: 'a help text', args: ['analyze', '--help'], code: 0 },
    { what: 'the version', args: ['--version'], code: 0 },
    { what: 'a usage error with a suggestion', args: ['inspect', 'fixtures/lenet.onnx', '--jsn'], code: 2 },
    { what: 'a bad input', args: ['inspect', 'fixtures/no-such-model.onnx'], code: 2 },
    {
      what: 'data that does not fit the model',
      args: ['gate', 'fixtures/residual.onnx', '--data', 'fixtures/mnist/digits-10.npy', '--sigma', '8', '--max-flip-rate', '0'],
      code: 2,
    },
    { what: 'inspect --json', args: ['inspect', 'fixtures/lenet.onnx', '--json'], code: 0 },
  ];
  for (const c of cases) {
    it(`${c.what}: netmoments ${c.args.join(' ')}`, async () => {
      const child = runCli(c.args, { cwd: dir });
      const here = await cli(c.args, { cwd: dir });
      expect(child.code, child.stderr).toBe(c.code);
      expect(here).toEqual(child);
    });
  }

  it('exit 1 from a gate, and a file written relative to the working folder', async () => {
    residualData(dir, 6);
    const args = ['gate', 'fixtures/residual.onnx', '--data', 'res-6.npy', '--labels', 'res-6-labels.npy', '--sigma', '2'];
    const child = runCli([...args, '--max-flip-rate', '0', '--out-dir', 'gate-child', '-q'], { cwd: dir });
    const here = await cli([...args, '--max-flip-rate', '0', '--out-dir', 'gate-here', '-q'], { cwd: dir });
    expect(child.code, child.stderr).toBe(1);
    expect(here).toEqual(child);
    expect(readFileSync(join(dir, 'gate-here', 'summary.json'), 'utf8')).toBe(readFileSync(join(dir, 'gate-child', 'summary.json'), 'utf8'));
  });

  it('leaves the working folder, exit code, environment and console as they were', async () => {
    const before = { cwd: process.cwd(), exitCode: process.exitCode, log: console.log, write: process.stdout.write, env: process.env.NETMOMENTS_PROBE };
    const r = await cli(['inspect', 'fixtures/no-such-model.onnx'], { cwd: dir, env: { NETMOMENTS_PROBE: '1' } });
    expect(r.code).toBe(2);
    expect({ cwd: process.cwd(), exitCode: process.exitCode, log: console.log, write: process.stdout.write, env: process.env.NETMOMENTS_PROBE }).toEqual(
      before,
    );
  });
});
