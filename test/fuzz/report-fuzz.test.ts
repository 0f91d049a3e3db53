/**
 * Fuzzing the files a dataset report reads (issue 5 and 7, docs/SECURITY.md): the dataset .npy,
 * the labels .npy, and a saved bank, both its manifest and its .npy files. A damaged bank file is
 * caught by its sha256 at once, so the bank cases also re-sign the manifest (new sha256 and size)
 * after mutating a centre's .npy: that is a hostile bank, and the decoder behind the checksum
 * must refuse it by itself. Mutations are test/fuzz/mutate.mjs's (bit flips, interesting bytes,
 * truncation, splices, header fields, values), seeded by fast-check.
 *
 * Every case runs the CLI (`netmoments report`, its main() in this process) and must end either
 *   - in exit 0 with complete outputs (summary.json, samples.csv with one row per input), or
 *   - in exit 2 with one stderr line that starts with `netmoments: ` and names a file, no stack
 *     trace, and no report outputs in --out-dir (a checkpoint that --resume could continue is
 *     allowed, a samples.csv or summary.json is not).
 * Knobs: REPORT_FUZZ_SEED (default 11), REPORT_FUZZ_CASES (default 24 in npm test; `npm run test:slow` runs 48).
 */
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { cli } from '../helpers/cli.js';
import { residualData } from '../datasets/helpers.js';
import { mutateNpy, NPY_OPS } from './mutate.mjs';

const SEED = process.env.REPORT_FUZZ_SEED ? Number(process.env.REPORT_FUZZ_SEED) : 11;
const CASES = process.env.REPORT_FUZZ_CASES ? Number(process.env.REPORT_FUZZ_CASES) : 24;
const PARALLEL = 2;

type Role = 'data' | 'labels' | 'bank-npy' | 'bank-manifest';
const ROLES: Role[] = ['data', 'data', 'labels', 'bank-npy', 'bank-npy', 'bank-manifest'];
const BANK_FILES = ['A', 'B', 'D', 'zb', 'gb', 'point'];

const opArb = fc.record({ op: fc.constantFrom(...NPY_OPS), a: fc.nat(), b: fc.nat(), c: fc.nat() });
const caseArb = fc.record({
  role: fc.constantFrom(...ROLES),
  ops: fc.array(opArb, { minLength: 1, maxLength: 3 }),
  bankFile: fc.constantFrom(...BANK_FILES),
  centre: fc.nat({ max: 1 }),
  variance: fc.constantFrom('exact', 'none'),
});

/** A `netmoments report` run, in this process (test/helpers/cli.ts's `cli`; the runs queue one at a time). */
const run = (args: string[]): Promise<{ code: number; stderr: string }> => cli(args);

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

describe('fuzz: mutated datasets, labels and banks through report', () => {
  const root = mkdtempSync(join(tmpdir(), 'nm-report-fuzz-'));
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  it(`${CASES} cases: complete outputs (exit 0) or one line naming a file (exit 2) and no report outputs`, async () => {
    const { data, labels } = residualData(root, 10, 3);
    const bank = join(root, 'bank');
    const built = await cli(['bank', 'fixtures/residual.onnx', '--relu', '1', '--data', data, '--k', '2', '--out-dir', bank, '--quiet']);
    expect(built.code, built.stderr).toBe(0);
    const cases = fc.sample(caseArb, { seed: SEED, numRuns: CASES });
    const problems: string[] = [];
    const codes = new Map<string, number>();

    const one = async (s: (typeof cases)[number], id: number): Promise<void> => {
      const dir = join(root, `case-${id}`);
      mkdirSync(dir);
      let d = data;
      let l = labels;
      let b: string | undefined;
      if (s.role === 'data' || s.role === 'labels') {
        const src = s.role === 'data' ? data : labels;
        const dst = join(dir, s.role === 'data' ? 'data.npy' : 'labels.npy');
        writeFileSync(dst, mutateNpy(new Uint8Array(readFileSync(src)), s.ops));
        if (s.role === 'data') d = dst;
        else l = dst;
      } else {
        b = join(dir, 'bank');
        cpSync(bank, b, { recursive: true });
        const manifestFile = join(b, 'manifest.json');
        if (s.role === 'bank-npy') {
          const name = `centre-${String(s.centre).padStart(4, '0')}/${s.bankFile}.npy`;
          const bytes = mutateNpy(new Uint8Array(readFileSync(join(b, name))), s.ops);
          writeFileSync(join(b, name), bytes);
          const m = JSON.parse(readFileSync(manifestFile, 'utf8'));
          m.files[name] = { ...m.files[name], sha256: sha256(bytes), bytes: bytes.length };
          writeFileSync(manifestFile, JSON.stringify(m, null, 2));
        } else {
          writeFileSync(manifestFile, mutateNpy(new Uint8Array(readFileSync(manifestFile)), s.ops));
        }
      }
      const out = join(dir, 'out');
      const args = [
        'report',
        'fixtures/residual.onnx',
        '--relu',
        '1',
        '--data',
        d,
        '--labels',
        l,
        '--sigma',
        '0.3',
        '--variance',
        s.variance,
        '--linearize',
        b ? `bank:${b}` : 'input',
        '--out-dir',
        out,
        '--quiet',
      ];
      const r = await run(args);
      const where = `case ${id} (${s.role}${s.role === 'bank-npy' ? ` ${s.bankFile}` : ''}, ops ${JSON.stringify(s.ops)}): netmoments ${args.join(' ')}\n  exit ${r.code}: ${r.stderr.split('\n').slice(0, 6).join('\n  ')}`;
      codes.set(`${s.role} exit ${r.code}`, (codes.get(`${s.role} exit ${r.code}`) ?? 0) + 1);
      const outputs = existsSync(out) ? readdirSync(out).filter((f) => !f.startsWith('.')) : [];
      if (r.code === 0) {
        if (!existsSync(join(out, 'summary.json')) || !existsSync(join(out, 'samples.csv')))
          problems.push(`${where}\n  exit 0 without complete outputs: ${outputs.join(', ')}`);
        else {
          const summary = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
          const rows = readFileSync(join(out, 'samples.csv'), 'utf8').trim().split('\n').length - 1;
          if (rows !== summary.inputs) problems.push(`${where}\n  samples.csv has ${rows} rows, summary.json says ${summary.inputs} inputs`);
        }
      } else if (r.code === 2) {
        const lines = r.stderr.split('\n').filter((x) => x.length > 0);
        if (lines.length !== 1) problems.push(`${where}\n  ${lines.length} stderr lines, expected 1`);
        else if (!lines[0].startsWith('netmoments: ')) problems.push(`${where}\n  stderr does not start with 'netmoments: '`);
        else if (![d, l, b, 'fixtures/residual.onnx'].some((f) => f && lines[0].includes(f)))
          problems.push(`${where}\n  the message names none of the input files`);
        if (/\n\s+at .+:\d+:\d+/.test(r.stderr)) problems.push(`${where}\n  stack trace`);
        if (outputs.length > 0) problems.push(`${where}\n  outputs left behind: ${outputs.join(', ')}`);
      } else {
        problems.push(`${where}\n  exit ${r.code} (expected 0 or 2)`);
      }
      rmSync(dir, { recursive: true, force: true });
    };

    const queue = cases.map((s, i) => [s, i] as const);
    await Promise.all(
      Array.from({ length: PARALLEL }, async () => {
        for (let next = queue.shift(); next; next = queue.shift()) await one(next[0], next[1]);
      }),
    );
    const summary = [...codes]
      .sort()
      .map(([k, v]) => `${k}: ${v}`)
      .join('; ');
    expect(problems, `${problems.length} problem(s) in ${CASES} cases (${summary}); seed ${SEED}\n${problems.join('\n')}`).toEqual([]);
    // the mutations must reach both outcomes, or the test checks less than it says
    expect(
      [...codes.keys()].some((k) => k.endsWith('exit 0')),
      summary,
    ).toBe(true);
    expect(
      [...codes.keys()].some((k) => k.endsWith('exit 2')),
      summary,
    ).toBe(true);
  }, 600_000);
});
