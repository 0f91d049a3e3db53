/**
 * Every example of every command's --help (yargs `.example(...)`, enumerated from
 * src/commands/index.ts, so commands added later are covered) and every `netmoments ...` command in
 * README.md's code blocks runs as written: exit 0 (a gate example that is meant to fail says so
 * with `--max-flip-rate 0` and exits 1). Each runs through the CLI's main() in this process
 * (test/helpers/cli.ts's `cli`; test/cli/inprocess.test.ts checks it agrees with `node
 * bin/netmoments.js`), in a temporary folder where `fixtures` links to
 * the repository's; examples that read what another writes (`merge` of report shards, `fooling`
 * of attack's mu.npy) run after it. Examples that need ../shared/wild are skipped with a message when it is absent.
 */
import { existsSync, mkdtempSync, readFileSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import yargs, { type Argv } from 'yargs';
import { describe, expect, it } from 'vitest';
import { commands } from '../../src/commands/index.js';
import { ROOT, cli } from '../helpers/cli.js';

interface Example {
  source: string;
  /** Marked slow in the README: run only with NETMOMENTS_SLOW_TESTS=1. */
  slow?: boolean;
  args: string[];
}

/** The examples each command's builder declares, as argument lists without `$0`. */
function helpExamples(): Example[] {
  const out: Example[] = [];
  for (const c of commands) {
    const y = yargs([]) as Argv;
    const declare = y.example.bind(y);
    y.example = ((cmd: string | [string, string?][], description?: string) => {
      if (typeof cmd === 'string') out.push({ source: `${String(c.command)} --help`, args: splitWords(cmd.replace(/^\$0\s+/, '')) });
      return declare(cmd as string, description);
    }) as typeof y.example;
    if (typeof c.builder === 'function') c.builder(y);
  }
  return out;
}

/** Shell words of a command line that uses no quoting beyond plain words, with $TMPDIR and ${TMPDIR:-/tmp} as `tmp`. */
function splitWords(line: string): string[] {
  return line
    .replace(/\$\{TMPDIR:-\/tmp\}|\$TMPDIR/g, '.')
    .split(/\s+/)
    .filter((w) => w.length > 0);
}

/** `netmoments ...` lines of README.md's ```sh blocks (with backslash continuations, without trailing comments). */
export function readmeCommands(text: string): Example[] {
  const out: Example[] = [];
  // a block right after `<!-- examples: slow ... -->` runs only with NETMOMENTS_SLOW_TESTS=1 (npm run test:slow)
  const blocks = text.matchAll(/(<!-- examples: slow[^>]*-->\n)?```sh\n([\s\S]*?)```/g);
  for (const [, slow, body] of blocks) {
    const joined = body.replace(/\\\n\s*/g, ' ');
    for (const raw of joined.split('\n')) {
      const line = raw.replace(/\s+#.*$/, '').trim();
      if (line.startsWith('netmoments ')) out.push({ source: 'README.md', args: splitWords(line.slice('netmoments '.length)), slow: slow !== undefined });
    }
  }
  return out;
}

/** Paths an example writes (--out-dir, --out, --junit). */
function outputsOf(e: Example): string[] {
  const outs: string[] = [];
  e.args.forEach((a, i) => {
    if (a === '--out-dir' || a === '--out' || a === '--junit') outs.push(e.args[i + 1].replace(/\/$/, ''));
  });
  return outs;
}

/** The examples in an order where each runs after the ones whose outputs it reads (a stable topological order). */
export function inDependencyOrder(examples: Example[]): Example[] {
  // an argument names a path directly or after a prefix such as bank: (--linearize bank:DIR)
  const reads = (e: Example, path: string) =>
    e.args.some((a, i) => {
      const v = a.replace(/^[a-z]+:/, '').replace(/\/$/, '');
      return i > 0 && !['--out-dir', '--out', '--junit'].includes(e.args[i - 1]) && (v === path || v.startsWith(`${path}/`));
    });
  const done = new Set<Example>();
  const order: Example[] = [];
  const visit = (e: Example, depth: number) => {
    if (done.has(e) || depth > examples.length) return;
    for (const other of examples) if (other !== e && outputsOf(other).some((p) => reads(e, p))) visit(other, depth + 1);
    done.add(e);
    order.push(e);
  };
  for (const e of examples) visit(e, 0);
  return order;
}

/** The exit code an example is documented to give: 1 for a gate meant to fail (a zero flip-rate bound), else 0. */
function expectedExit(e: Example): number {
  const at = e.args.indexOf('--max-flip-rate');
  return e.args[0] === 'gate' && at >= 0 && Number(e.args[at + 1]) === 0 ? 1 : 0;
}

/** Each distinct command once (the README repeats some --help examples), naming every place it appears. */
function distinct(all: Example[]): Example[] {
  const byLine = new Map<string, Example>();
  for (const e of all) {
    const key = e.args.join(' ');
    const seen = byLine.get(key);
    if (seen) seen.source = `${seen.source}, ${e.source}`;
    else byLine.set(key, { ...e });
  }
  return [...byLine.values()];
}

const examples = inDependencyOrder(distinct([...helpExamples(), ...readmeCommands(readFileSync(join(ROOT, 'README.md'), 'utf8'))]));

describe('examples in --help and README.md run', () => {
  it('finds examples of every command and of the README', () => {
    const withExamples = new Set(examples.filter((e) => e.source !== 'README.md').map((e) => e.args[0]));
    for (const c of commands) expect(withExamples, `${String(c.command)} has no --help example`).toContain(String(c.command).split(' ')[0]);
    expect(examples.filter((e) => e.source.includes('README.md')).length).toBeGreaterThan(5);
  });

  const dir = mkdtempSync(join(tmpdir(), 'nm-examples-'));
  symlinkSync(join(ROOT, 'fixtures'), join(dir, 'fixtures'));
  for (const e of examples) {
    const line = `netmoments ${e.args.join(' ')}`;
    it(`${e.source}: ${line}`, async (ctx) => {
      if (e.args.some((a) => a.includes('shared/wild')) && !existsSync(join(ROOT, '..', 'shared', 'wild'))) {
        console.warn(`skipped (../shared/wild is absent): ${line}`);
        ctx.skip();
      }
      if (e.slow && process.env.NETMOMENTS_SLOW_TESTS !== '1') {
        console.warn(`skipped (marked slow in the README; npm run test:slow runs it): ${line}`);
        ctx.skip();
      }
      const r = await cli([...e.args, '--quiet'], { cwd: dir });
      expect(r.code, `${line}\nstderr: ${r.stderr}`).toBe(expectedExit(e));
    }, 300_000);
  }
});
