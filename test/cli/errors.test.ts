/**
 * Bad input and bad usage through the real CLI: exit 2, one stderr line that names the file and the
 * problem, no stack trace, and no output file left behind.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { expectBadInput, runCli } from '../helpers/cli.js';
import { DataType, makeNode, makeTensor } from '../../src/onnx/proto.js';
import { fcNet, noReluNet, reluInIfNet, reluNetWith, residualNet } from '../onnx/models.js';

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'nm-errors-'));
}

function write(dir: string, name: string, bytes: Uint8Array): string {
  const file = join(dir, name);
  writeFileSync(file, bytes);
  return file;
}

/** Run `split` and check that the out dir was not created (or holds nothing new). */
function splitFails(file: string, extra: string[], problem: RegExp, named = file): void {
  const dir = tmp();
  const out = join(dir, 'out');
  const r = runCli(['split', file, '--out-dir', out, ...extra]);
  expectBadInput(r, named, problem);
  expect(existsSync(out), `out dir left behind: ${existsSync(out) ? readdirSync(out) : ''}`).toBe(false);
  expect(readdirSync(dir)).toEqual([]);
}

describe('CLI errors', () => {
  it('corrupt ONNX (random bytes)', () => {
    const dir = tmp();
    let seed = 7;
    const bytes = Uint8Array.from({ length: 4096 }, () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff);
    const file = write(dir, 'random.onnx', bytes);
    expectBadInput(runCli(['inspect', file]), file, /not an ONNX model/);
    splitFails(file, ['--relu', '0'], /not an ONNX model/);
  });

  it('truncated ONNX (first half of a model)', () => {
    const dir = tmp();
    const fixture = join('fixtures', 'fc-2.onnx');
    const full = existsSync(fixture) ? new Uint8Array(readFileSync(fixture)) : fcNet();
    const file = write(dir, 'half.onnx', full.slice(0, full.length >> 1));
    expectBadInput(runCli(['inspect', file, '--json']), file, /not an ONNX model or truncated|not produced|reads/);
    splitFails(file, ['--relu', '0'], /not an ONNX model or truncated|not produced|reads/);
  });

  it('an empty file and a folder instead of a file', () => {
    const dir = tmp();
    const file = write(dir, 'empty.onnx', new Uint8Array(0));
    expectBadInput(runCli(['inspect', file]), file, /empty/);
    const folder = join(dir, 'folder.onnx');
    mkdirSync(folder);
    expectBadInput(runCli(['inspect', folder]), folder, /is a directory/);
  });

  it('a missing file', () => {
    const file = join(tmp(), 'nope.onnx');
    expectBadInput(runCli(['inspect', file]), file, /no such file/);
    splitFails(file, ['--relu', '0'], /no such file/);
  });

  it('split of a model with no ReLU, and of a model whose only ReLU is inside an If body', () => {
    const dir = tmp();
    const file = write(dir, 'norelu.onnx', noReluNet());
    splitFails(file, ['--relu', '0'], /no Relu node/);
    const ifFile = write(dir, 'if.onnx', reluInIfNet());
    splitFails(ifFile, ['--relu', '0'], /inside control-flow subgraphs.*cannot be split/);
  });

  it('ReLU index out of range and an unknown ReLU name list the valid ones', () => {
    const dir = tmp();
    const file = write(dir, 'residual.onnx', residualNet());
    splitFails(file, ['--relu', '5'], /ReLU 5 is out of range: the model has 2 ReLUs \(0\.\.1\): 0: 'relu1'/);
    splitFails(file, ['--relu', '-1'], /ReLU -1 is out of range/);
    splitFails(file, ['--relu', 'conv1'], /no ReLU named 'conv1'.*1: 'relu2'/);
    splitFails(file, ['--relu', '0', '--output', 'zzz'], /no tensor named 'zzz'/);
  });

  it('a failed split leaves an existing out dir as it was, and an unwritable out dir is one line', () => {
    const dir = tmp();
    const file = write(dir, 'residual.onnx', residualNet());
    const out = join(dir, 'out');
    mkdirSync(out);
    writeFileSync(join(out, 'keep.txt'), 'x');
    const r = runCli(['split', file, '--relu', '9', '--out-dir', out]);
    expectBadInput(r, file, /out of range/);
    expect(readdirSync(out)).toEqual(['keep.txt']);
    const blocker = write(dir, 'blocker', new Uint8Array([1]));
    const bad = join(blocker, 'sub');
    const w = runCli(['split', file, '--relu', '0', '--out-dir', bad]);
    expectBadInput(w, bad, /cannot write the split/);
    expect(readdirSync(dir).sort()).toEqual(['blocker', 'out', 'residual.onnx']);
  });

  it('a non-finite weight names the initializer', () => {
    const dir = tmp();
    const bias = makeTensor('bias', DataType.FLOAT, [3], [0, 1, Number.NaN]);
    const file = write(dir, 'nan.onnx', reluNetWith([bias], [makeNode('Add', ['r', 'bias'], ['y'], { name: 'add' })]));
    expectBadInput(runCli(['inspect', file]), file, /initializer 'bias' holds a non-finite value \(NaN at element 2\)/);
    splitFails(file, ['--relu', '0'], /initializer 'bias' holds a non-finite value/);
  });

  it('usage errors exit 2: missing required option, unknown option, unknown command, no command', () => {
    const dir = tmp();
    const file = write(dir, 'fc.onnx', fcNet());
    for (const args of [
      ['split', file, '--out-dir', join(dir, 'o')],
      ['split', file, '--relu', '0'],
      ['inspect', file, '--bogus'],
      ['inspect'],
      ['frobnicate', file],
      [],
    ]) {
      const r = runCli(args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      const lines = r.stderr.split('\n').filter((l) => l);
      expect(lines, args.join(' ')).toHaveLength(1);
      expect(lines[0]).toMatch(/^netmoments: .*\(see --help\)$/);
      expect(r.stderr).not.toMatch(/\bat .+:\d+:\d+/);
    }
    expect(existsSync(join(dir, 'o'))).toBe(false);
  });

  it('--debug adds the stack trace', () => {
    const file = join(tmp(), 'nope.onnx');
    const r = runCli(['inspect', file, '--debug']);
    expect(r.code).toBe(2);
    expect(r.stderr.split('\n')[0]).toMatch(/no such file/);
    expect(r.stderr).toMatch(/\bat .+:\d+:\d+/);
  });
});
