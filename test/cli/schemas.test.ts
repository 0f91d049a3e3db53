/**
 * Every JSON output of the CLI against its JSON Schema in schemas/ (ajv, strict mode): each command
 * runs on the bundled fixtures (a few digits, few Monte Carlo samples) and its JSON is validated.
 * The schemas close every fixed record (`additionalProperties: false`), so a field added to an
 * output without its schema, or dropped from it, fails here.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { beforeAll, describe, expect, it } from 'vitest';
import { encodeNpy, readNpy } from '../../src/data/npy.js';
import { ROOT, cli } from '../helpers/cli.js';

const SCHEMAS = join(ROOT, 'schemas');
const ajv = new Ajv2020({ strict: true, allErrors: true });
const validators = new Map<string, ValidateFunction>();

function validator(name: string): ValidateFunction {
  let v = validators.get(name);
  if (!v) {
    v = ajv.compile(JSON.parse(readFileSync(join(SCHEMAS, `${name}.schema.json`), 'utf8')) as object);
    validators.set(name, v);
  }
  return v;
}

/** Validate `value` against schemas/<name>.schema.json, failing with ajv's errors. */
function expectValid(name: string, value: unknown, what: string): void {
  const v = validator(name);
  const ok = v(value);
  expect(ok, `${what} against ${name}.schema.json: ${JSON.stringify(v.errors?.slice(0, 5), null, 1)}`).toBe(true);
}

function readJson(path: string): unknown {
  return JSON.parse(readFileSync(path, 'utf8')) as unknown;
}

/** Every object schema with properties in `schema` (and its $defs) that leaves additionalProperties open. */
function openRecords(schema: unknown, path = '#'): string[] {
  if (Array.isArray(schema)) return schema.flatMap((s, i) => openRecords(s, `${path}/${i}`));
  if (typeof schema !== 'object' || schema === null) return [];
  const s = schema as Record<string, unknown>;
  const here = s.properties !== undefined && s.additionalProperties === undefined ? [path] : [];
  return [...here, ...Object.entries(s).flatMap(([k, v]) => openRecords(v, `${path}/${k}`))];
}

let dir: string;
/** The CLI in the temporary folder, expecting `code`. */
async function run(args: string[], code = 0): Promise<string> {
  const r = await cli([...args, '--quiet'], { cwd: dir });
  expect(r.code, `netmoments ${args.join(' ')}\n${r.stderr}`).toBe(code);
  return r.stdout;
}

describe('JSON outputs against schemas/', () => {
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'nm-schemas-'));
    symlinkSync(join(ROOT, 'fixtures'), join(dir, 'fixtures'));
    // three digits keep the dataset commands fast
    const digits = readNpy(join(ROOT, 'fixtures', 'mnist', 'digits-10.npy'));
    const labels = readNpy(join(ROOT, 'fixtures', 'mnist', 'labels-10.npy'));
    writeFileSync(join(dir, 'd3.npy'), encodeNpy((digits.data as Float32Array).slice(0, 3 * 784), [3, 1, 28, 28]));
    writeFileSync(join(dir, 'l3.npy'), encodeNpy((labels.data as BigInt64Array).slice(0, 3), [3]));
  });

  it('every schema compiles in strict mode and closes every record it describes', () => {
    const names = readdirSync(SCHEMAS).filter((f) => f.endsWith('.schema.json'));
    expect(names.length).toBeGreaterThanOrEqual(11);
    for (const f of names) {
      const schema = readJson(join(SCHEMAS, f));
      validator(f.replace(/\.schema\.json$/, ''));
      expect(openRecords(schema), `${f}: records without additionalProperties`).toEqual([]);
    }
  });

  it('inspect --json, split and linearize', async () => {
    expectValid('inspect', JSON.parse(await run(['inspect', 'fixtures/lenet.onnx', '--json'])), 'inspect --json');
    await run(['split', 'fixtures/lenet.onnx', '--relu', '1', '--out-dir', 'split']);
    expectValid('split', readJson(join(dir, 'split', 'split.json')), 'split.json');
    await run(['linearize', 'fixtures/lenet.onnx', '--input', 'fixtures/mnist/digit-0.npy', '--relu', '2', '--out-dir', 'lin']);
    expectValid('linearize', readJson(join(dir, 'lin', 'linearization.json')), 'linearization.json');
  });

  it('analyze: propagate and two-stage, with Monte Carlo, a window and the covariance', async () => {
    const propagate = JSON.parse(await run(['analyze', 'fixtures/lenet.onnx', '--input', 'fixtures/mnist/digit-0.png', '--sigma', '8', '--mc', '50']));
    expectValid('analyze', propagate, 'analyze (propagate)');
    expect(propagate.results[0].trust.verdict).toMatch(/^(ok|warn|fail)$/);
    const twoStage = JSON.parse(
      await run(
        ['analyze', 'fixtures/lenet.onnx', '--input', 'fixtures/mnist/digit-0.npy', '--relu', '2', '--window', '10,10,7,7', '--sigma', '20'].concat([
          '--covariance',
          '--mc',
          '50',
        ]),
      ),
    );
    expectValid('analyze', twoStage, 'analyze (two-stage)');
    expect(twoStage.method).toBe('two-stage');
    // drift: a field the schema does not know fails
    const drifted = { ...twoStage, results: [{ ...twoStage.results[0], extra: 1 }] };
    expect(validator('analyze')(drifted)).toBe(false);
  });

  it('bank, report with the bank and Monte Carlo, shards and merge, gate --out-dir', async () => {
    await run(['bank', 'fixtures/lenet.onnx', '--data', 'd3.npy', '--k', '2', '--out-dir', 'bank']);
    expectValid('bank', readJson(join(dir, 'bank', 'manifest.json')), 'bank manifest.json');
    await run([
      'report',
      'fixtures/lenet.onnx',
      '--data',
      'd3.npy',
      '--labels',
      'l3.npy',
      '--sigma',
      '8',
      '--linearize',
      'bank:bank',
      '--mc',
      '50',
      '--mc-inputs',
      '1',
      '--out-dir',
      'rep',
    ]);
    expectValid('report', readJson(join(dir, 'rep', 'summary.json')), 'report summary.json (bank, --mc)');
    for (const i of [0, 1]) {
      await run([
        'report',
        'fixtures/lenet.onnx',
        '--data',
        'd3.npy',
        '--sigma',
        '8',
        '--chunk',
        '2',
        '--shard',
        `${i}/2`,
        '--per-logit',
        '--out-dir',
        `shard-${i}`,
      ]);
      expectValid('report', readJson(join(dir, `shard-${i}`, 'summary.json')), `shard ${i} summary.json`);
      const records = readFileSync(join(dir, `shard-${i}`, 'records.ndjson'), 'utf8')
        .split('\n')
        .filter((l) => l.length > 0);
      expect(records.length).toBeGreaterThan(0);
      for (const line of records) expectValid('report-record', JSON.parse(line), `shard ${i} records.ndjson`);
    }
    await run(['merge', 'shard-0', 'shard-1', '--out-dir', 'merged']);
    expectValid('report', readJson(join(dir, 'merged', 'summary.json')), 'merge summary.json');
    await run(['gate', 'fixtures/lenet.onnx', '--data', 'd3.npy', '--labels', 'l3.npy', '--sigma', '8', '--max-flip-rate', '0.5', '--out-dir', 'gate']);
    expectValid('report', readJson(join(dir, 'gate', 'summary.json')), 'gate --out-dir summary.json');
  });

  it('tightness on data and on a synthetic net, sensitivity', async () => {
    await run(['tightness', 'fixtures/lenet.onnx', '--data', 'd3.npy', '--sigma', '8', '--runs', '1', '--mc', '50', '--out-dir', 'tight']);
    expectValid('tightness', readJson(join(dir, 'tight', 'tightness.json')), 'tightness.json (data)');
    await run(['tightness', 'fixtures/fc-2.onnx', '--synthetic', '--runs', '1', '--mc', '50', '--out-dir', 'tight-synthetic']);
    expectValid('tightness', readJson(join(dir, 'tight-synthetic', 'tightness.json')), 'tightness.json (synthetic)');
    await run([
      'sensitivity',
      'fixtures/lenet.onnx',
      '--data',
      'd3.npy',
      '--labels',
      'l3.npy',
      '--count',
      '1',
      '--stride',
      '7',
      '--sigma',
      '100',
      '--out-dir',
      'sens',
    ]);
    expectValid('sensitivity', readJson(join(dir, 'sens', 'sensitivity.json')), 'sensitivity.json');
  });

  it('attack (targeted, universal) and fooling', async () => {
    await run([
      'attack',
      'fixtures/lenet.onnx',
      '--input',
      'fixtures/mnist/digit-0.npy',
      '--target',
      '3',
      '--iters',
      '20',
      '--verify',
      '20',
      '--out-dir',
      'att',
    ]);
    expectValid('attack', readJson(join(dir, 'att', 'attack.json')), 'attack.json (targeted)');
    await run(['attack', 'fixtures/lenet.onnx', '--universal', '--data', 'd3.npy', '--count', '2', '--iters', '10', '--verify', '10', '--out-dir', 'univ']);
    expectValid('attack', readJson(join(dir, 'univ', 'attack.json')), 'attack.json (universal)');
    expect(existsSync(join(dir, 'univ', 'mu.npy'))).toBe(true);
    const fooling = JSON.parse(
      await run(['fooling', 'fixtures/lenet.onnx', '--data', 'd3.npy', '--count', '2', '--perturbation', 'univ/mu.npy', '--sigma', '1', '--mc', '20']),
    );
    expectValid('fooling', fooling, 'fooling');
  });
});
