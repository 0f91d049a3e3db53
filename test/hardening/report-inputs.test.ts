/**
 * Bad datasets and labels through `netmoments report` (issues 5 and 7): each is exit 2 with one
 * line naming the file, and nothing is left in --out-dir: no report outputs, and no checkpoint
 * either when the bad input is met mid-run.
 * The randomized counterpart is test/fuzz/report-fuzz.test.ts.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeNpy } from '../../src/data/npy.js';
import { cli, expectBadInput } from '../helpers/cli.js';
import { residualData } from '../datasets/helpers.js';
import { tmp, write } from './models.js';

const MODEL = 'fixtures/residual.onnx'; // [N, 1, 8, 8] -> 3 classes; relu 1 has a skip across it
const COUNT = 6;

async function reportFails(args: string[], file: string, problem: RegExp): Promise<void> {
  const out = join(tmp('nm-report-bad-'), 'out');
  expectBadInput(await cli(['report', MODEL, '--relu', '1', '--sigma', '0.3', '--quiet', ...args, '--out-dir', out]), file, problem);
  // the out dir did not exist: nothing at all is left, not even a checkpoint (the same data would
  // fail the same way under --resume)
  expect(existsSync(out) ? readdirSync(out, { recursive: true }) : 'no out dir').toBe('no out dir');
}

describe('report: bad data and labels', () => {
  const dir = tmp('nm-report-bad-data-');
  const { data, labels } = residualData(dir, COUNT, 4);

  it('a label that is not one of the model classes names the labels file, the input and the class count', async () => {
    const bad = write(dir, 'labels-7.npy', encodeNpy(BigInt64Array.from([0, 1, 2, 7, 1, 0].map(BigInt)), [COUNT]));
    await reportFails(['--data', data, '--labels', bad], bad, /label 7 of input 3 is not one of the 3 output classes/);
  });

  it('too few labels names the labels file and both counts', async () => {
    const short = write(dir, 'labels-short.npy', encodeNpy(BigInt64Array.from([0, 1, 2].map(BigInt)), [3]));
    await reportFails(['--data', data, '--labels', short], short, /3 labels for 6 inputs/);
  });

  // A finite float32 input can still overflow the model's float32 arithmetic; the report must say
  // which input, on both paths (per-input linearization, and a bank whose own forward pass is fine).
  const huge = Float32Array.from({ length: COUNT * 64 }, (_, i) => (i === 4 * 64 + 10 ? 3e38 : 0.1 * Math.sin(i)));
  const hugeData = write(dir, 'huge.npy', encodeNpy(huge, [COUNT, 1, 8, 8]));

  it('an input that overflows the model (--linearize input): exit 2 naming the model and the input', async () => {
    await reportFails(['--data', hugeData, '--linearize', 'input'], MODEL, new RegExp(`input 4 of ${hugeData.replaceAll('/', '\\/')}: .*overflows float32`));
  });

  it('an input that overflows the model (a bank built on good data): exit 2 naming the model and the input', async () => {
    const bank = join(dir, 'bank');
    const built = await cli(['bank', MODEL, '--relu', '1', '--data', data, '--k', '2', '--out-dir', bank, '--quiet']);
    expect(built.code, built.stderr).toBe(0);
    await reportFails(
      ['--data', hugeData, '--linearize', `bank:${bank}`],
      MODEL,
      /input 4 of .*huge\.npy: the model's output \d is (NaN|-?Infinity) .*overflows float32/,
    );
  });
});
