/**
 * `netmoments bank`: the manifest (schema, model sha256, relu, k, sha256 of every file), float32
 * .npy per centre, the same numbers as --linearize kmeans:K, the size estimate and refusal, and
 * clear one-line errors for damaged or mismatched banks.
 */
import { createHash } from 'node:crypto';
import { cpSync, existsSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cli, expectBadInput } from '../helpers/cli.js';
import { parseNpy } from '../../src/data/npy.js';
import { openDataset } from '../../src/data/dataset.js';
import { loadModel } from '../../src/onnx/load.js';
import { runReport } from '../../src/dataset/index.js';
import { NetmomentsError } from '../../src/errors.js';
import { digits, tmp } from './helpers.js';

const dir = tmp('nm-bank-');
const data = digits(dir, 12);
const bank = join(dir, 'bank');

beforeAll(async () => {
  const r = await cli(['bank', 'fixtures/lenet.onnx', '--data', data.data, '--relu', '2', '--k', '2', '--out-dir', bank]);
  expect(r.code, r.stderr).toBe(0);
  expect(r.stderr).toMatch(/bank of k = 2 centres x 1\.5 MiB/);
});

describe('netmoments bank', () => {
  it('writes float32 .npy per centre and a manifest with the sha256 of every file', async () => {
    const m = JSON.parse(readFileSync(join(bank, 'manifest.json'), 'utf8'));
    expect(m.schema).toBe('netmoments.bank/1');
    expect(m.model.sha256).toBe(createHash('sha256').update(readFileSync('fixtures/lenet.onnx')).digest('hex'));
    expect(m.split).toMatchObject({ index: 2, node: '/Relu_2', width: 500 });
    expect(m.k).toBe(2);
    expect(m.kmeans.members.reduce((a: number, b: number) => a + b, 0)).toBe(12);
    const names = Object.keys(m.files).sort();
    expect(names).toEqual(['centres.npy', ...[0, 1].flatMap((c) => ['A', 'B', 'gb', 'point', 'zb'].map((f) => `centre-000${c}/${f}.npy`))].sort());
    for (const name of names) {
      const bytes = readFileSync(join(bank, name));
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(m.files[name].sha256);
      const a = parseNpy(bytes);
      expect(a.dtype).toBe('float32');
      expect(a.shape).toEqual(m.files[name].shape);
    }
    expect(m.files['centre-0000/A.npy'].shape).toEqual([500, 784]);
    expect(m.files['centre-0001/B.npy'].shape).toEqual([10, 500]);
    expect(existsSync(join(bank, '.building-' + process.pid))).toBe(false);
  });

  it('--linearize bank:DIR gives the same samples as --linearize kmeans:K built in the run', async () => {
    const common = ['report', 'fixtures/lenet.onnx', '--data', data.data, '--labels', data.labels, '--sigma', '8', '--per-logit'];
    const a = await cli([...common, '--linearize', `bank:${bank}`, '--out-dir', join(dir, 'ra')]);
    const b = await cli([...common, '--linearize', 'kmeans:2', '--out-dir', join(dir, 'rb')]);
    expect(a.code, a.stderr).toBe(0);
    expect(b.code, b.stderr).toBe(0);
    expect(readFileSync(join(dir, 'ra', 'samples.csv'), 'utf8')).toBe(readFileSync(join(dir, 'rb', 'samples.csv'), 'utf8'));
    const sa = JSON.parse(readFileSync(join(dir, 'ra', 'summary.json'), 'utf8'));
    expect(sa.linearization).toMatchObject({ mode: 'bank', k: 2, point: 'centroid' });
    expect(sa.run.modelSha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('estimates the size first and refuses a K that does not fit (exit 2, the estimate in the message)', async () => {
    const out = join(dir, 'big');
    const r = await cli(['bank', 'fixtures/lenet.onnx', '--data', data.data, '--k', '10', '--max-size', '4M', '--out-dir', out]);
    expectBadInput(
      r,
      out,
      /a bank of k = 10 centres x 1\.5 MiB = 15 MiB \(A alone is p x n = 500 x 784 float32 per centre\) does not fit in --max-size 4\.0 MiB/,
    );
    expect(existsSync(out)).toBe(false);
    const few = await cli(['bank', 'fixtures/lenet.onnx', '--data', data.data, '--k', '13', '--out-dir', out]);
    expectBadInput(few, data.data, /--k 13 needs at least 13 inputs/);
  });

  it('kmeans:K in a report refuses a bank over the memory limit before clustering', async () => {
    const model = loadModel('fixtures/lenet.onnx');
    const ds = openDataset(data.data, { inputShape: [1, 28, 28] });
    const run = runReport(model, ds, {
      noise: { kind: 'isotropic', sigma: 8 },
      linearize: { kind: 'kmeans', k: 4 },
      dataFile: data.data,
      maxBankBytes: 2 << 20,
    });
    await expect(run).rejects.toThrow(NetmomentsError);
    await expect(
      runReport(model, ds, { noise: { kind: 'isotropic', sigma: 8 }, linearize: { kind: 'kmeans', k: 4 }, dataFile: data.data, maxBankBytes: 2 << 20 }),
    ).rejects.toThrow(/a bank of k = 4 centres x 1\.5 MiB = 6\.\d MiB .* does not fit in the 2\.0 MiB of memory/);
  });

  it('a damaged or mismatched bank is a one-line error naming the file', async () => {
    const report = async (b: string, extra: string[] = [], model = 'fixtures/lenet.onnx') =>
      await cli(['report', model, '--data', data.data, '--sigma', '8', '--linearize', `bank:${b}`, '--out-dir', join(dir, 'never'), ...extra]);
    const copy = (name: string) => {
      const d = join(dir, name);
      cpSync(bank, d, { recursive: true });
      return d;
    };
    // a flipped byte in a centre's A
    const flipped = copy('flipped');
    const a = join(flipped, 'centre-0001', 'A.npy');
    const bytes = readFileSync(a);
    bytes[5000] ^= 1;
    writeFileSync(a, bytes);
    expectBadInput(await report(flipped), a, /does not match the sha256 in the manifest: the bank is damaged/);
    // a truncated file
    const short = copy('short');
    truncateSync(join(short, 'centres.npy'), 100);
    expectBadInput(await report(short), join(short, 'centres.npy'), /has 100 bytes, the manifest says \d+/);
    // a missing file
    const missing = copy('missing');
    rmSync(join(missing, 'centre-0000', 'B.npy'));
    expectBadInput(await report(missing), join(missing, 'centre-0000', 'B.npy'), /missing: the bank is incomplete/);
    // no manifest (an interrupted build), a manifest that is not JSON, another schema
    const nomf = copy('nomanifest');
    rmSync(join(nomf, 'manifest.json'));
    expectBadInput(await report(nomf), join(nomf, 'manifest.json'), /no manifest\.json: not a bank, or a bank whose build did not finish/);
    const badjson = copy('badjson');
    writeFileSync(join(badjson, 'manifest.json'), '{"schema": "netmoments.bank/1", ');
    expectBadInput(await report(badjson), join(badjson, 'manifest.json'), /is not valid JSON/);
    const schema = copy('schema');
    const m = JSON.parse(readFileSync(join(schema, 'manifest.json'), 'utf8'));
    writeFileSync(join(schema, 'manifest.json'), JSON.stringify({ ...m, schema: 'netmoments.bank/9' }));
    expectBadInput(await report(schema), join(schema, 'manifest.json'), /has schema "netmoments\.bank\/9", expected "netmoments\.bank\/1"/);
    // another model, another split
    expectBadInput(await report(bank, [], 'fixtures/lenet-batch1.onnx'), join(bank, 'manifest.json'), /built for a different model/);
    expectBadInput(await report(bank, ['--relu', '1']), join(bank, 'manifest.json'), /split at ReLU 2 .* this run at ReLU 1/);
    expect(existsSync(join(dir, 'never'))).toBe(false);
  });
});
