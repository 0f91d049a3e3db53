/**
 * CLI habits: "did you mean" for mistyped options, `netmoments help CMD`, option checks before the
 * model loads, no "NaN" in messages, and analyze's human summary on a terminal.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { commandOptions, main, rejectNotANumber, unknownOptions, withSuggestions } from '../../src/cli.js';
import { analyzeStdoutFormat } from '../../src/report/analyze.js';
import { closestName, editDistance } from '../../src/util/suggest.js';
import { runCli } from '../helpers/cli.js';

describe('suggestions for mistyped names', () => {
  it('edit distance counts insertions, deletions, substitutions and adjacent swaps', () => {
    expect(editDistance('sigma', 'sigma')).toBe(0);
    expect(editDistance('sigm', 'sigma')).toBe(1);
    expect(editDistance('sgima', 'sigma')).toBe(1);
    expect(editDistance('sigmx', 'sigma')).toBe(1);
    expect(editDistance('', 'abc')).toBe(3);
    expect(editDistance('kitten', 'sitting')).toBe(3);
  });

  it('suggests the closest known option, and nothing for a word far from all of them', () => {
    const known = ['sigma', 'noise-var', 'noise-cov', 'mc', 'seed', 'out-dir', 'linearize'];
    expect(closestName('sigm', known)).toBe('sigma');
    expect(closestName('noise-vr', known)).toBe('noise-var');
    expect(closestName('linearise', known)).toBe('linearize');
    expect(closestName('outdir', known)).toBe('out-dir');
    expect(closestName('banana', known)).toBeUndefined();
  });

  it("rewrites yargs's unknown-argument message, dropping camelCase twins", () => {
    const known = ['sigma', 'noise-var', 'noiseVar', 'quiet', 'q'];
    expect(withSuggestions('Unknown arguments: sigm, noise-vr, noiseVr', known)).toBe(
      'Unknown arguments: sigm (did you mean --sigma?), noise-vr (did you mean --noise-var?)',
    );
    expect(withSuggestions('Unknown argument: zzzzzz', known)).toBe('Unknown argument: zzzzzz');
    expect(withSuggestions('Missing required argument: data', known)).toBe('Missing required argument: data');
  });

  it('a name no option is near: which other commands take it; a head of a name (--out-dir for --out)', () => {
    const elsewhere = { command: 'report', options: { report: ['sigma', 'out-dir'], sweep: ['count', 'start'], certify: ['count', 'out'] } };
    expect(withSuggestions('Unknown argument: count', ['sigma', 'out-dir'], elsewhere)).toBe(
      'Unknown argument: count (not an option of report; sweep, certify take it)',
    );
    expect(withSuggestions('Unknown argument: banana', ['sigma'], elsewhere)).toBe('Unknown argument: banana');
    expect(closestName('out-dir', ['out', 'seed'])).toBe('out');
    expect(unknownOptions(['report', 'm.onnx', '--count', '3', '--no-resume', '--sigma=2', '-q', '--help'], ['sigma', 'resume'])).toEqual(['count']);
  });

  it('every command suggests its own option for a typo of it (in process, before any model is read)', async () => {
    const all = commandOptions();
    expect(Object.keys(all)).toContain('report');
    for (const [command, options] of Object.entries(all)) {
      const option = [...options].sort((a, b) => b.length - a.length)[0];
      const typo = option.slice(0, 1) + option.slice(2); // one letter dropped
      const said: string[] = [];
      const spy = vi.spyOn(process.stderr, 'write').mockImplementation((t) => (said.push(String(t)), true));
      const code = await main([command, 'm.onnx', `--${typo}`, '1']).finally(() => spy.mockRestore());
      expect(code, command).toBe(2);
      expect(said.join(''), command).toContain(`${typo} (did you mean --${option}?)`);
    }
  });

  it('through the CLI: exit 2 and one line with the suggestion', () => {
    const r = runCli(['inspect', 'fixtures/lenet.onnx', '--jsn']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe('netmoments: Unknown argument: jsn (did you mean --json?) (see --help)');
    // report takes no --count; with required options missing too, both are said
    const count = runCli(['report', 'fixtures/lenet.onnx', '--count', '3']);
    expect(count.code).toBe(2);
    expect(count.stderr.trim()).toBe(
      'netmoments: Missing required arguments: data, out-dir; Unknown argument: count (not an option of report; sensitivity, fooling, attack, certify, sweep take it) (see --help)',
    );
  });
});

describe('netmoments --version', () => {
  it("is the package's version wherever it runs, not that of the package.json in the working directory", () => {
    const dir = mkdtempSync(join(tmpdir(), 'nm-version-'));
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'someone-else', version: '9.9.9' }));
    const own = JSON.parse(readFileSync('package.json', 'utf8')).version;
    const r = runCli(['--version'], { cwd: dir });
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(own);
  });
});

describe('netmoments help CMD', () => {
  it("prints CMD's --help", () => {
    const viaHelp = runCli(['help', 'analyze']);
    const viaFlag = runCli(['analyze', '--help']);
    expect(viaHelp.code).toBe(0);
    expect(viaHelp.stdout).toBe(viaFlag.stdout);
    expect(viaHelp.stdout).toMatch(/--sigma/);
    const overview = runCli(['help']);
    expect(overview.code).toBe(0);
    expect(overview.stdout).toMatch(/netmoments help \[command\]/);
    const typo = runCli(['help', 'analyse']);
    expect(typo.code).toBe(2);
    expect(typo.stderr.trim()).toMatch(/^netmoments: no command 'analyse' \(did you mean analyze\?\); the commands: inspect, split, analyze/);
  });
});

describe('option checks before the model loads, and no NaN in messages', () => {
  it('a number option given text names what was typed', () => {
    expect(() => rejectNotANumber({ sigma: Number.NaN, _: [], $0: 'netmoments' }, ['analyze', 'm.onnx', '--sigma', 'abc'])).toThrow(
      "--sigma takes a number, got 'abc'",
    );
    expect(() => rejectNotANumber({ mc: Number.NaN }, ['--mc=lots'])).toThrow("--mc takes a number, got 'lots'");
    expect(() => rejectNotANumber({ sigma: 8 }, ['--sigma', '8'])).not.toThrow();
    for (const args of [
      ['analyze', 'fixtures/lenet.onnx', '--sigma', 'abc'],
      ['report', 'fixtures/lenet.onnx', '--data', 'fixtures/mnist/digits-10.npy', '--mc', 'x', '--out-dir', 'never'],
      ['gate', 'fixtures/lenet.onnx', '--data', 'fixtures/mnist/digits-10.npy', '--max-flip-rate', 'two'],
    ]) {
      const r = runCli(args);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).not.toMatch(/NaN/);
      expect(r.stderr).toMatch(/takes a number, got '/);
    }
  });

  it('bad options and missing files are reported before the model is read (a corrupt model is never reached)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nm-habits-'));
    const model = join(dir, 'corrupt.onnx');
    writeFileSync(model, 'not a model');
    const cases: [string[], RegExp][] = [
      [['analyze', model, '--sigma', '-1'], /--sigma must be a finite number >= 0, got -1/],
      [['analyze', model, '--window', '1,2'], /--window expects four integers/],
      [['analyze', model, '--input', join(dir, 'nope.png')], /nope\.png: no such file/],
      [['analyze', model, '--noise-var', join(dir, 'var.npy')], /var\.npy: no such file/],
      [['analyze', model, '--rank', '0'], /--rank must be a whole number >= 1/],
      [['report', model, '--data', join(dir, 'none.npy'), '--out-dir', join(dir, 'r')], /none\.npy: no such file/],
      [['tightness', model, '--data', 'fixtures/mnist/digits-10.npy', '--sigma', '-2', '--out-dir', join(dir, 't')], /--sigma must be/],
    ];
    for (const [args, problem] of cases) {
      const r = runCli(args);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(problem);
      expect(r.stderr).not.toMatch(/not an ONNX model/);
    }
  });
});

describe('analyze output on a terminal', () => {
  it('the human summary on a terminal without --out or --format; JSON to a pipe or a file; --format wins', () => {
    expect(analyzeStdoutFormat(undefined, undefined, true)).toBe('text');
    expect(analyzeStdoutFormat(undefined, undefined, false)).toBe('json');
    expect(analyzeStdoutFormat(undefined, 'r.json', true)).toBe('json');
    expect(analyzeStdoutFormat('json', undefined, true)).toBe('json');
    expect(analyzeStdoutFormat('csv', undefined, true)).toBe('csv');
    expect(analyzeStdoutFormat('text', undefined, false)).toBe('text');
  });

  it('--format text prints the summary on stdout (and not again on stderr)', () => {
    const r = runCli(['analyze', 'fixtures/lenet.onnx', '--input', 'fixtures/mnist/digit-0.npy', '--sigma', '8', '--format', 'text']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^analyzed 1 input\(s\) of fixtures\/lenet\.onnx/);
    expect(r.stdout).toMatch(/input 0: trust (ok|WARN|FAIL)/);
    expect(r.stderr).not.toMatch(/analyzed 1 input/);
  });
});
