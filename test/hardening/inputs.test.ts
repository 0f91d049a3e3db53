/**
 * Input validation everywhere a user hands the tool numbers (issue 7, docs/SECURITY.md): NaN or
 * Inf in inputs, noise variances, covariances, noise means and linearization points (also values
 * that only overflow once converted to the float32 the model runs in), wrong element counts, a
 * covariance that is not positive semi-definite (the message gives the most negative eigenvalue),
 * not symmetric, negative variances, labels that are not class indices, empty datasets, bad
 * option values. Each is exit 2 with one line naming the file (or the option), no report left.
 */
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NetmomentsError } from '../../src/errors.js';
import { encodeNpy } from '../../src/data/npy.js';
import { openDataset, readLabelFile } from '../../src/data/dataset.js';
import { covarianceFactor } from '../../src/moments/montecarlo.js';
import { expectBadInput, ROOT, runCli } from '../helpers/cli.js';
import { cli, tmp, write } from './models.js';

const MODEL = join(ROOT, 'fixtures', 'affine-relu-affine.onnx'); // x [N, 12] -> 16 -> 4
const N = 12;

function vec(values: number[] | Float64Array, shape = [values.length]): Uint8Array {
  return encodeNpy(Float64Array.from(values), shape);
}

/** analyze with the given extra args must fail naming `file`; no report is left in the out folder. */
async function analyzeFails(args: string[], file: string, problem: RegExp, real = false): Promise<void> {
  const dir = tmp('nm-in-out-');
  const out = join(dir, 'report.json');
  const a = ['analyze', MODEL, '--quiet', ...args, '--out', out];
  expectBadInput(real ? runCli(a) : await cli(a), file, problem);
  expect(existsSync(out)).toBe(false);
  expect(readdirSync(dir)).toEqual([]);
}

/** A PSD 12 x 12 covariance F F^T, row-major. */
function psd(seed = 3): Float64Array {
  let s = seed;
  const F = Float64Array.from({ length: N * N }, () => ((s = (s * 16807) % 2147483647) / 2147483647) * 2 - 1);
  const C = new Float64Array(N * N);
  for (let i = 0; i < N; i++) for (let j = 0; j < N; j++) for (let k = 0; k < N; k++) C[i * N + j] += F[i * N + k] * F[j * N + k];
  return C;
}

describe('non-finite values', () => {
  const dir = tmp();
  const ok = write(dir, 'x.npy', encodeNpy(new Float32Array(N).fill(0.5), [N]));

  it('in the input: NaN, +Inf, and a float64 value beyond float32', async () => {
    const nan = write(
      dir,
      'nan.npy',
      encodeNpy(
        Float32Array.from({ length: N }, (_, i) => (i === 3 ? NaN : 0)),
        [N],
      ),
    );
    await analyzeFails(['--input', nan], nan, /element 3 is NaN; input data must be finite/, true);
    const inf = write(
      dir,
      'inf.npy',
      encodeNpy(
        Float32Array.from({ length: N }, (_, i) => (i === 5 ? Infinity : 0)),
        [N],
      ),
    );
    await analyzeFails(['--input', inf], inf, /element 5 is Infinity/);
    const big = write(dir, 'big.npy', vec(Array.from({ length: N }, (_, i) => (i === 7 ? 1e200 : 0))));
    await analyzeFails(['--input', big], big, /element 7 is 1e\+200, beyond the float32 range/);
  });

  it('in the noise variance, covariance, noise mean and linearization point', async () => {
    const v = write(dir, 'var.npy', vec(Array.from({ length: N }, (_, i) => (i === 2 ? NaN : 1))));
    await analyzeFails(['--input', ok, '--noise-var', v], v, /NaN at element 2|non-finite value at element 2/);
    const cov = psd();
    cov[N + 1] = Infinity;
    const c = write(dir, 'cov.npy', encodeNpy(cov, [N, N]));
    await analyzeFails(['--input', ok, '--noise-cov', c], c, /holds Infinity at element 13/);
    const m = write(dir, 'mean.npy', vec(Array.from({ length: N }, (_, i) => (i === 4 ? -Infinity : 0))));
    await analyzeFails(['--input', ok, '--sigma', '1', '--noise-mean', m], m, /the noise mean holds -Infinity at element 4/);
    const m2 = write(dir, 'mean2.npy', vec(Array.from({ length: N }, (_, i) => (i === 1 ? 1e300 : 0))));
    await analyzeFails(['--input', ok, '--sigma', '1', '--noise-mean', m2], m2, /the noise mean holds 1e\+300 at element 1, not a finite float32 value/);
    const at = write(dir, 'at.npy', vec(Array.from({ length: N }, (_, i) => (i === 0 ? 1e39 : 0))));
    await analyzeFails(
      ['--input', ok, '--sigma', '1', '--at', at],
      at,
      /the linearization point holds a value that is not a finite float32 \(1e\+39 at element 0\)/,
    );
    const atNan = write(
      dir,
      'at-nan.npy',
      encodeNpy(
        Float32Array.from({ length: N }, (_, i) => (i === 9 ? NaN : 0)),
        [N],
      ),
    );
    await analyzeFails(['--input', ok, '--at', atNan], atNan, /NaN at element 9/);
  });

  it('--sigma NaN, Infinity or negative is a usage error', async () => {
    // 'nan' is not a number to yargs: the message quotes what was typed (never "NaN")
    for (const [s, message] of [
      ['nan', /--sigma takes a number, got 'nan'/],
      ['Infinity', /--sigma must be a finite number >= 0/],
      ['-1', /--sigma must be a finite number >= 0/],
    ] as const) {
      const r = await cli(['analyze', MODEL, '--quiet', '--sigma', s]);
      expect(r.code, s).toBe(2);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(message);
    }
  });
});

describe('element counts', () => {
  const dir = tmp();
  it('input, variance, mean, covariance and point of the wrong size name both counts', async () => {
    const x = write(dir, 'x11.npy', encodeNpy(new Float32Array(11), [11]));
    await analyzeFails(['--input', x], x, /holds 11 elements \(shape \[11\]\), which is neither one input of 12 elements/);
    const ok = write(dir, 'x.npy', encodeNpy(new Float32Array(N), [N]));
    const v = write(dir, 'v13.npy', vec(new Array(13).fill(1)));
    await analyzeFails(['--input', ok, '--noise-var', v], v, /the noise variance holds 13 elements .* the model's input has 12 elements/);
    const m = write(dir, 'm.npy', vec(new Array(24).fill(0), [2, 12]));
    await analyzeFails(['--input', ok, '--noise-mean', m], m, /the noise mean holds 24 elements/);
    const c = write(dir, 'c.npy', vec(new Array(12 * 11).fill(0), [12, 11]));
    await analyzeFails(['--input', ok, '--noise-cov', c], c, /a covariance must have n x n = 12 x 12 = 144 elements .* this one holds 132/);
    const a = write(dir, 'a.npy', vec(new Array(6).fill(0)));
    await analyzeFails(['--input', ok, '--at', a], a, /the linearization point holds 6 elements/);
  });
});

describe('covariances', () => {
  const dir = tmp();
  const ok = write(dir, 'x.npy', encodeNpy(new Float32Array(N), [N]));

  it('not positive semi-definite: the message gives the most negative eigenvalue and names the file', async () => {
    // the identity with a 2 coupling elements 0 and 1: a positive diagonal, eigenvalues 3, 1, ..., 1, -1
    const C = new Float64Array(N * N);
    for (let i = 0; i < N; i++) C[i * N + i] = 1;
    C[1] = C[N] = 2;
    const f = write(dir, 'notpsd.npy', encodeNpy(C, [N, N]));
    await analyzeFails(
      ['--input', ok, '--noise-cov', f],
      f,
      /the noise covariance is not positive semi-definite: its most negative eigenvalue is -1\.00000 /,
      true,
    );
  });

  it('a negative diagonal, an asymmetric matrix, negative variances', async () => {
    const C = psd();
    C[5 * N + 5] = -1;
    const neg = write(dir, 'negdiag.npy', encodeNpy(C, [N, N]));
    await analyzeFails(['--input', ok, '--noise-cov', neg], neg, /not positive semi-definite: diagonal element 5 is -1/);
    const A = psd();
    A[1] += 1;
    const asym = write(dir, 'asym.npy', encodeNpy(A, [N, N]));
    await analyzeFails(['--input', ok, '--noise-cov', asym], asym, /not symmetric: element \(0,1\)/);
    const v = write(dir, 'negvar.npy', vec(Array.from({ length: N }, (_, i) => (i === 8 ? -0.5 : 1))));
    await analyzeFails(['--input', ok, '--noise-var', v], v, /the noise variance is negative \(-0\.5\) at element 8/);
  });

  it('entries too large to factor: refused naming the file (CLI) and with a NetmomentsError (library), not a crash inside the eigendecomposition', async () => {
    const C = psd();
    C[6 * N + 6] = 1.7e308; // found by the fuzz test: ml-matrix's QL iteration threw a TypeError on the overflow
    const f = write(dir, 'huge.npy', encodeNpy(C, [N, N]));
    await analyzeFails(['--input', ok, '--noise-cov', f], f, /the noise covariance holds 1\.7e\+308 at element 78, not a finite float32 value/);
    expect(() => covarianceFactor(C, N)).toThrow(NetmomentsError);
    expect(() => covarianceFactor(C, N)).toThrow(/the noise covariance holds 1\.70e\+308, too large to factor in float64/);
  });

  it('a singular but valid covariance (rank 1) is accepted', async () => {
    const u = Float64Array.from({ length: N }, (_, i) => i / N);
    const C = Float64Array.from({ length: N * N }, (_, k) => u[Math.floor(k / N)] * u[k % N]);
    const f = write(dir, 'rank1.npy', encodeNpy(C, [N, N]));
    const r = await cli(['analyze', MODEL, '--quiet', '--input', ok, '--noise-cov', f]);
    expect(r.code, r.stderr).toBe(0);
  });
});

describe('datasets and labels', () => {
  it('an empty .npy batch and an empty PNG folder', async () => {
    const dir = tmp();
    const empty = write(dir, 'empty.npy', encodeNpy(new Float32Array(0), [0, N]));
    await analyzeFails(['--input', empty], empty, /holds no inputs/);
    const folder = join(dir, 'pngs');
    mkdirSync(folder);
    await analyzeFails(['--input', folder], folder, /the folder holds no \.png files/);
    const zero = write(dir, 'zero.npy', encodeNpy(new Float32Array(0), [0]));
    await analyzeFails(['--input', zero], zero, /holds 0 elements|holds no inputs/);
  });

  it('labels that are not class indices: negative, fractional, text, too many or too few', async () => {
    const dir = tmp();
    const data = write(dir, 'x.npy', encodeNpy(new Float32Array(3 * N), [3, N]));
    const err = (labels: string): string => {
      try {
        openDataset(data, { inputShape: [N], labels });
      } catch (e) {
        expect(e).toBeInstanceOf(NetmomentsError);
        expect((e as NetmomentsError).file).toBe(labels);
        return (e as NetmomentsError).message;
      }
      throw new Error('expected an error');
    };
    expect(err(write(dir, 'neg.npy', encodeNpy(BigInt64Array.from([0n, -1n, 2n]), [3])))).toMatch(/label 1 is -1; labels must be non-negative integers/);
    expect(err(write(dir, 'frac.npy', vec([0, 1.5, 2])))).toMatch(/label 1 is 1\.5/);
    expect(err(write(dir, 'huge.npy', vec([0, 2 ** 40, 2])))).toMatch(/label 1 is 1099511627776/);
    expect(err(write(dir, 'nan.npy', vec([0, NaN, 2])))).toMatch(/label 1 is NaN/);
    expect(err(write(dir, 'text.txt', '0\n1\ncat\n'))).toMatch(/line 'cat' is not a label/);
    expect(err(write(dir, 'four.txt', '0\n1\n2\n3\n'))).toMatch(/holds 4 labels for 3 inputs/);
    expect(err(write(dir, 'bool.npy', encodeNpy(Uint8Array.from([1, 0, 1]), [3], { dtype: 'bool' })))).toMatch(/labels must be integers, not bool/);
    expect(readLabelFile(write(dir, 'fine.txt', '# header comment\n0\n\n9\n1\n')).kind).toBe('list');
  });
});

describe('option values', () => {
  it('--mc, --threads and --window out of range are one-line usage errors', async () => {
    for (const args of [
      ['--mc', '-5'],
      ['--mc', '1.5'],
      ['--threads', '0'],
      ['--window', '0,0,3,3'],
      ['--window', 'a,b'],
      ['--relu', '99'],
    ]) {
      const r = await cli(['analyze', MODEL, '--quiet', ...args]);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      const lines = r.stderr.split('\n').filter((l) => l);
      expect(lines, args.join(' ')).toHaveLength(1);
      expect(r.stderr).not.toMatch(/internal error|\bat .+:\d+:\d+/);
    }
  });
});
