/**
 * External data (issue 7, docs/SECURITY.md): an ONNX file may point its weights at other files.
 * Only regular files inside the model's own folder are read: no absolute paths, no '..', no
 * symlink (to a file or a folder) that leaves the folder, offsets and lengths inside the file and
 * equal to the tensor's declared size. Each model is built in a temporary folder and run through
 * the real CLI (inspect and analyze): exit 2, one line naming the model, nothing written.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { expectBadInput, runCli } from '../helpers/cli.js';
import { cli, externalModel, tmp, w1Bytes, write } from './models.js';

type Entries = { key: string; value: string }[];

/** A folder with the model (W1 in external data) and, beside it, w1.bin holding W1. */
function setup(entries: Entries, where: 'graph' | 'subgraph' = 'graph'): { dir: string; model: string } {
  const dir = tmp('nm-ext-');
  writeFileSync(join(dir, 'w1.bin'), w1Bytes());
  const model = write(dir, 'model.onnx', externalModel(entries, where));
  return { dir, model };
}

/** inspect and analyze refuse the model (in-process main(); `real`: through bin/netmoments.js). */
async function refused(model: string, problem: RegExp, real = false): Promise<void> {
  const run = real ? async (a: string[]) => runCli(a) : cli;
  expectBadInput(await run(['inspect', model]), model, problem);
  const out = join(tmp('nm-ext-out-'), 'report.json');
  expectBadInput(await run(['analyze', model, '--quiet', '--out', out]), model, problem);
  expect(existsSync(out)).toBe(false);
}

describe('external data', () => {
  it('a model whose weights sit beside it (with offset and length, or in a subfolder) loads and analyses', async () => {
    const { dir, model } = setup([{ key: 'location', value: 'w1.bin' }]);
    const r = await cli(['analyze', model, '--quiet']);
    expect(r.code, r.stderr).toBe(0);
    const direct = JSON.parse(r.stdout).results[0].mean;
    // the same bytes at offset 16 of a bigger file, and in a subfolder
    const padded = new Uint8Array(16 + 96 + 5);
    padded.set(w1Bytes(), 16);
    writeFileSync(join(dir, 'pack.bin'), padded);
    mkdirSync(join(dir, 'weights'));
    writeFileSync(join(dir, 'weights', 'w1.bin'), w1Bytes());
    for (const entries of [
      [
        { key: 'location', value: 'pack.bin' },
        { key: 'offset', value: '16' },
        { key: 'length', value: '96' },
      ],
      [{ key: 'location', value: 'weights/w1.bin' }],
      [{ key: 'location', value: './weights/./w1.bin' }],
    ]) {
      const m = write(dir, 'other.onnx', externalModel(entries));
      const o = await cli(['analyze', m, '--quiet']);
      expect(o.code, `${JSON.stringify(entries)}: ${o.stderr}`).toBe(0);
      expect(JSON.parse(o.stdout).results[0].mean).toEqual(direct);
    }
  });

  it('a symlink that stays inside the folder is followed', async () => {
    const { dir } = setup([]);
    symlinkSync(join(dir, 'w1.bin'), join(dir, 'alias.bin'));
    const m = write(dir, 'alias.onnx', externalModel([{ key: 'location', value: 'alias.bin' }]));
    expect((await cli(['inspect', m])).code).toBe(0);
  });

  it('absolute paths, Windows drive and UNC paths', async () => {
    const outside = tmp('nm-ext-outside-');
    writeFileSync(join(outside, 'w1.bin'), w1Bytes());
    await refused(setup([{ key: 'location', value: join(outside, 'w1.bin') }]).model, /external data location '.*w1\.bin' is an absolute path/);
    await refused(setup([{ key: 'location', value: '/etc/passwd' }]).model, /'\/etc\/passwd' is an absolute path/, true);
    await refused(setup([{ key: 'location', value: 'C:\\Windows\\win.ini' }]).model, /is an absolute path/);
    await refused(setup([{ key: 'location', value: '\\\\server\\share\\w1.bin' }]).model, /is an absolute path/);
  });

  it("'..' anywhere in the path", async () => {
    await refused(setup([{ key: 'location', value: '../w1.bin' }]).model, /leaves the model's folder \('\.\.'\)/);
    await refused(setup([{ key: 'location', value: 'weights/../../w1.bin' }]).model, /leaves the model's folder/);
    await refused(setup([{ key: 'location', value: 'weights\\..\\..\\w1.bin' }]).model, /leaves the model's folder/);
  });

  it('symlinks that leave the folder: to a file, to a folder, a chain of links', async () => {
    const outside = tmp('nm-ext-outside-');
    writeFileSync(join(outside, 'w1.bin'), w1Bytes());
    const a = setup([{ key: 'location', value: 'link.bin' }]);
    symlinkSync(join(outside, 'w1.bin'), join(a.dir, 'link.bin'));
    await refused(a.model, /resolves outside the model's folder/, true);
    const b = setup([{ key: 'location', value: 'sub/w1.bin' }]);
    symlinkSync(outside, join(b.dir, 'sub'));
    await refused(b.model, /resolves outside the model's folder/);
    const c = setup([{ key: 'location', value: 'first.bin' }]);
    symlinkSync(join(c.dir, 'second.bin'), join(c.dir, 'first.bin'));
    symlinkSync(join(outside, 'w1.bin'), join(c.dir, 'second.bin'));
    await refused(c.model, /resolves outside the model's folder/);
  });

  it('offsets and lengths outside the file, or not matching the declared size', async () => {
    const cases: [Entries, RegExp][] = [
      [
        [
          { key: 'location', value: 'w1.bin' },
          { key: 'offset', value: '97' },
        ],
        /lies past the end of 'w1\.bin' \(96 bytes\)/,
      ],
      [
        [
          { key: 'location', value: 'w1.bin' },
          { key: 'offset', value: '8' },
          { key: 'length', value: '96' },
        ],
        /past the end/,
      ],
      [
        [
          { key: 'location', value: 'w1.bin' },
          { key: 'length', value: '9999999999' },
        ],
        /past the end/,
      ],
      [
        [
          { key: 'location', value: 'w1.bin' },
          { key: 'offset', value: '99999999999999999999999' },
        ],
        /is absurd|not a non-negative integer|past the end/,
      ],
      [
        [
          { key: 'location', value: 'w1.bin' },
          { key: 'offset', value: '-8' },
        ],
        /not a non-negative integer/,
      ],
      [
        [
          { key: 'location', value: 'w1.bin' },
          { key: 'offset', value: '0x10' },
        ],
        /not a non-negative integer/,
      ],
      [
        [
          { key: 'location', value: 'w1.bin' },
          { key: 'length', value: '48' },
        ],
        /declares 96 bytes but its external data range holds 48/,
      ],
      [
        [
          { key: 'location', value: 'w1.bin' },
          { key: 'offset', value: '48' },
        ],
        /declares 96 bytes but its external data range holds 48/,
      ],
    ];
    for (const [entries, re] of cases) await refused(setup(entries).model, re);
  });

  it('no location, a missing file, a folder, a NUL byte, a FIFO that would block a read', async () => {
    await refused(setup([]).model, /names no location/);
    await refused(setup([{ key: 'location', value: 'missing.bin' }]).model, /does not exist beside the model/);
    const d = setup([{ key: 'location', value: 'folder' }]);
    mkdirSync(join(d.dir, 'folder'));
    await refused(d.model, /is not a regular file/);
    await refused(setup([{ key: 'location', value: 'w1.bin\u0000.txt' }]).model, /NUL byte/);
    const f = setup([{ key: 'location', value: 'fifo' }]);
    const mk = spawnSync('mkfifo', [join(f.dir, 'fifo')]);
    if (mk.status === 0) await refused(f.model, /is not a regular file/);
  });

  it('the model file itself as external data is read only within its size', async () => {
    const d = setup([
      { key: 'location', value: 'model.onnx' },
      { key: 'offset', value: '0' },
      { key: 'length', value: '96' },
    ]);
    // whatever bytes sit there are weights now: the model loads, or the weights are non-finite; never an internal error
    const r = await cli(['inspect', d.model]);
    expect([0, 2]).toContain(r.code);
    expect(r.stderr).not.toMatch(/internal error|\bat .+:\d+:\d+/);
  });

  it('external data inside a control-flow body is refused as unsupported', async () => {
    await refused(
      setup([{ key: 'location', value: 'w1.bin' }], 'subgraph').model,
      /a subgraph of node 'branch' holds external-data initializer 'W1', which netmoments does not resolve/,
    );
    expect(readdirSync(tmp())).toEqual([]);
  });
});
