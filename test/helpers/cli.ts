/**
 * Run the built CLI (dist/; test/global-setup.ts builds it first) the way a user does:
 *
 * - `runCli`: `node bin/netmoments.js ...` in a child process (the bin path, the process's exit
 *   code, signals, a fresh process);
 * - `cli`: the same `main(argv)` that bin/netmoments.js calls, in this test process, with stdout and
 *   stderr captured, the working folder and environment set for the run, and stdout and stderr not
 *   terminals (as under spawnSync's pipes). A child process pays about 0.4 CPU-seconds to start
 *   node and load the CLI and onnxruntime before any work; `cli` pays it once per test file. Runs
 *   are queued one at a time (each sets process-wide state: the working folder, the environment,
 *   process.exitCode, the stream writers).
 */
import { spawnSync } from 'node:child_process';
import { appendFileSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { expect } from 'vitest';

export const ROOT = join(import.meta.dirname, '..', '..');
export const BIN = join(ROOT, 'bin', 'netmoments.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  cwd?: string;
  timeoutMs?: number;
  env?: Record<string, string>;
}

/** CPU seconds of this process (self) and of the children it waited for, from /proc/self/stat (Linux). */
function cpuNow(): { self: number; children: number } {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const n = (i: number) => Number(f[i - 3]) / 100;
  return { self: n(14) + n(15), children: n(16) + n(17) };
}

/**
 * With NETMOMENTS_TEST_CPU=FILE (test/cpu-setup.ts), each CLI run appends {file, how, args, cpu}
 * to FILE.runs: the CPU seconds of the run (a child's, or this process's for an in-process run).
 */
function record<T>(how: 'spawn' | 'in-process', args: string[], run: () => T): T {
  const out = process.env.NETMOMENTS_TEST_CPU;
  if (!out) return run();
  const t0 = cpuNow();
  const done = (r: T) => {
    const t1 = cpuNow();
    const cpu = how === 'spawn' ? t1.children - t0.children : t1.self - t0.self;
    const file = relative(ROOT, expect.getState().testPath ?? '?');
    appendFileSync(`${out}.runs`, `${JSON.stringify({ file, how, args: args.join(' '), cpu: Math.round(cpu * 100) / 100 })}\n`);
    return r;
  };
  const r = run();
  return r instanceof Promise ? (r.then(done) as T) : done(r);
}

export function runCli(args: string[], options: CliOptions = {}): CliResult {
  return record('spawn', args, () => spawnCli(args, options));
}

function spawnCli(args: string[], options: CliOptions): CliResult {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: options.cwd ?? ROOT,
    encoding: 'utf8',
    timeout: options.timeoutMs ?? 120_000,
    env: { ...process.env, ...options.env },
  });
  if (r.error) throw r.error;
  return { code: r.status ?? (r.signal ? 128 : -1), stdout: r.stdout, stderr: r.stderr };
}

type Main = (argv: string[]) => Promise<number>;
let mainFn: Promise<Main> | undefined;
let queue: Promise<unknown> = Promise.resolve();

/** `netmoments ...args` in this process (see the top of this file); `timeoutMs` is not enforced here (the test's timeout is). */
export function cli(args: string[], options: CliOptions = {}): Promise<CliResult> {
  const run = queue.then(() => record('in-process', args, () => inProcess(args, options)));
  queue = run.catch(() => undefined);
  return run;
}

async function inProcess(args: string[], options: CliOptions): Promise<CliResult> {
  mainFn ??= (import(/* @vite-ignore */ pathToFileURL(join(ROOT, 'dist', 'cli.js')).href) as Promise<{ main: Main }>).then((m) => m.main);
  const main = await mainFn;
  const out = { stdout: '', stderr: '' };
  const capture = (key: 'stdout' | 'stderr') =>
    function write(chunk: string | Uint8Array, encoding?: unknown, cb?: unknown): boolean {
      out[key] += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
      const done = typeof encoding === 'function' ? encoding : cb;
      if (typeof done === 'function') process.nextTick(done as () => void);
      return true;
    };
  const text =
    (key: 'stdout' | 'stderr') =>
    (...a: unknown[]) => {
      out[key] += `${a.map((x) => (typeof x === 'string' ? x : String(x))).join(' ')}\n`;
    };
  const streams = { stdout: process.stdout, stderr: process.stderr };
  const saved = {
    cwd: process.cwd(),
    exitCode: process.exitCode,
    writes: { stdout: streams.stdout.write, stderr: streams.stderr.write },
    tty: Object.fromEntries(
      (['stdout', 'stderr'] as const).map((k) => [
        k,
        [Object.getOwnPropertyDescriptor(streams[k], 'isTTY'), Object.getOwnPropertyDescriptor(streams[k], 'columns')],
      ]),
    ),
    console: { log: console.log, info: console.info, debug: console.debug, warn: console.warn, error: console.error },
    env: Object.fromEntries(Object.keys(options.env ?? {}).map((k) => [k, process.env[k]])),
  };
  let code: number;
  try {
    for (const k of ['stdout', 'stderr'] as const) {
      streams[k].write = capture(k) as typeof process.stdout.write;
      Object.defineProperty(streams[k], 'isTTY', { value: false, configurable: true, writable: true });
      Object.defineProperty(streams[k], 'columns', { value: undefined, configurable: true, writable: true });
    }
    // yargs prints --help and its messages with console.log / console.error
    Object.assign(console, { log: text('stdout'), info: text('stdout'), debug: text('stdout'), warn: text('stderr'), error: text('stderr') });
    Object.assign(process.env, options.env ?? {});
    process.chdir(options.cwd ?? ROOT);
    process.exitCode = undefined;
    code = await main(args);
  } finally {
    process.chdir(saved.cwd);
    process.exitCode = saved.exitCode;
    for (const [k, v] of Object.entries(saved.env)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    Object.assign(console, saved.console);
    for (const k of ['stdout', 'stderr'] as const) {
      streams[k].write = saved.writes[k];
      const [tty, columns] = saved.tty[k];
      if (tty) Object.defineProperty(streams[k], 'isTTY', tty);
      else delete (streams[k] as { isTTY?: boolean }).isTTY;
      if (columns) Object.defineProperty(streams[k], 'columns', columns);
      else delete (streams[k] as { columns?: number }).columns;
    }
  }
  return { code, ...out };
}

/** The checks every bad-input case shares: exit 2, one stderr line naming `file` and matching `problem`, no stack trace. */
export function expectBadInput(r: CliResult, file: string, problem: RegExp): void {
  const lines = r.stderr.split('\n').filter((l) => l.length > 0);
  const where = `stderr: ${r.stderr}\nstdout: ${r.stdout}`;
  if (r.code !== 2) throw new Error(`exit code ${r.code}, expected 2\n${where}`);
  if (lines.length !== 1) throw new Error(`expected one stderr line, got ${lines.length}\n${where}`);
  if (!lines[0].startsWith('netmoments: ')) throw new Error(`stderr does not start with 'netmoments: '\n${where}`);
  if (!lines[0].includes(file)) throw new Error(`stderr does not name ${file}\n${where}`);
  if (!problem.test(lines[0])) throw new Error(`stderr does not match ${problem}\n${where}`);
  if (/\bat .+:\d+:\d+/.test(r.stderr) || /internal error/.test(r.stderr)) throw new Error(`stack trace or internal error\n${where}`);
}
