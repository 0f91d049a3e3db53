/**
 * A fuzz worker process (forked by test/fuzz/fuzz.test.ts). For each case it receives over IPC it
 * writes the mutated file into the case's folder, runs the `inspect` and/or `analyze` code paths
 * in this process (the commands' own handlers, compiled in dist/, with stdout and stderr captured
 * and errors mapped to exit codes as src/cli.ts maps them), and replies with a verdict:
 *
 *   ok        every run exited 0 (a valid report written) or 2 with one line on stderr that names
 *             the file (or an option), no stack trace, and a failed run left no file behind
 *   failure   anything else: exit 3 (an error that is not a NetmomentsError escaped; the run is
 *             repeated to capture the stack), a malformed or anonymous error message, a leftover
 *             file, a report with a non-finite mean; the parent also counts a worker that dies
 *             (crash) or does not answer in time (hang)
 *
 * Workers are recycled by the parent every few hundred cases: onnxruntime-node leaks memory when
 * sessions are created in one process.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { analyzeCommand } from '../../dist/commands/analyze.js';
import { inspectCommand } from '../../dist/commands/inspect.js';
import { NetmomentsError } from '../../dist/errors.js';
import { mutateNpy, mutateOnnx } from './mutate.mjs';

const realStderrWrite = process.stderr.write.bind(process.stderr);
let captured = { out: '', err: '' };
const capture = (key) =>
  function write(chunk, encoding, cb) {
    captured[key] += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    if (typeof encoding === 'function') encoding();
    else if (typeof cb === 'function') cb();
    return true;
  };
process.stdout.write = capture('out');
process.stderr.write = capture('err');

const cache = new Map();
function bytesOf(path) {
  let b = cache.get(path);
  if (!b) {
    b = new Uint8Array(readFileSync(path));
    cache.set(path, b);
  }
  return b;
}

const STACK = /\n\s+at .+:\d+:\d+/;

const COMMANDS = { analyze: analyzeCommand, inspect: inspectCommand };
/** The options' defaults as the commands' yargs builders declare them. */
const DEFAULTS = {
  analyze: { at: 'mean', variance: 'both', mc: 0, 'trust-check': 256, seed: 0, format: 'json', jacobian: 'auto', provider: 'cpu' },
  inspect: {},
};
const NUMBERS = new Set(['sigma', 'mc', 'trust-check', 'seed', 'threads', 'scale', 'offset', 'index']);

/**
 * The argv yargs would hand the command: `cmd model --key value --flag ...` (the fuzz cases use
 * only these forms). Parsing with yargs itself costs about 40 ms a run (it renders the help text
 * every time), more than most cases; the sample through the real CLI checks that both agree.
 */
function parseArgs(args) {
  const [cmd, model, ...rest] = args;
  const argv = { _: [cmd], $0: 'netmoments', model, ...DEFAULTS[cmd] };
  for (let i = 0; i < rest.length; i++) {
    const key = rest[i].slice(2);
    const next = rest[i + 1];
    let value = true;
    if (next !== undefined && !next.startsWith('--')) {
      value = NUMBERS.has(key) ? Number(next) : next;
      i++;
    }
    argv[key] = value;
    argv[key.replace(/-([a-z])/g, (_, ch) => ch.toUpperCase())] = value;
  }
  return argv;
}

/** Run a command's handler in-process, mapping errors to exit codes as src/cli.ts does. */
async function run(args, debug = false) {
  captured = { out: '', err: '' };
  process.exitCode = undefined;
  let code;
  try {
    await COMMANDS[args[0]].handler(parseArgs(args));
    code = process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (e) {
    if (e instanceof NetmomentsError) {
      code = 2;
      captured.err += `netmoments: ${e.describe()}\n`;
      if (debug) captured.err += `${e.stack}\n`;
    } else {
      code = 3;
      const msg = e instanceof Error ? e.message : String(e);
      captured.err += `netmoments: internal error: ${msg.split('\n').join(' ')}\n`;
      if (debug) captured.err += `${e instanceof Error ? e.stack : ''}\n`;
    }
  } finally {
    process.exitCode = undefined;
  }
  return { code, out: captured.out, err: captured.err };
}

/** Why a run is not acceptable, or null. `names`: files an error message may name (else it names an option). */
function judge(r, what, names) {
  if (r.escaped) return `${what}: an exception escaped main(): ${r.escaped}`;
  if (r.code === 0) return null;
  const lines = r.err.split('\n').filter((l) => l.length > 0);
  if (r.code === 2) {
    if (lines.length !== 1) return `${what}: exit 2 with ${lines.length} stderr lines: ${JSON.stringify(r.err.slice(0, 600))}`;
    if (!lines[0].startsWith('netmoments: ')) return `${what}: exit 2, stderr does not start with 'netmoments: ': ${lines[0].slice(0, 300)}`;
    if (STACK.test(r.err) || /internal error/.test(r.err)) return `${what}: exit 2 with a stack trace: ${r.err.slice(0, 600)}`;
    if (!names.some((f) => lines[0].includes(f)) && !/--[a-z]/.test(lines[0]))
      return `${what}: exit 2, the message names neither the file nor an option: ${lines[0].slice(0, 300)}`;
    return null;
  }
  return `${what}: exit ${r.code}: ${lines.join(' | ').slice(0, 800)}`;
}

/** Files in `dir` other than the expected ones. */
function leftovers(dir, expected) {
  return readdirSync(dir).filter((f) => !expected.includes(f));
}

async function runCase(c) {
  const dir = join(c.root, `case-${c.id}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const problems = [];
  const results = {};
  const messages = {};
  try {
    const donors = (c.donors ?? []).map(bytesOf);
    const base = bytesOf(c.base);
    const bytes = c.kind === 'onnx' ? mutateOnnx(base, c.ops, donors) : mutateNpy(base, c.ops, donors);
    const file = join(dir, c.fileName);
    writeFileSync(file, bytes);
    const inputs = [c.fileName];
    const sub = (a) => a.replaceAll('{file}', file);
    for (const step of c.steps) {
      const out = step.out ? join(dir, step.out) : undefined;
      const args = [...step.args.map(sub), ...(out ? ['--out', out] : [])];
      let r = await run(args);
      const verdict = judge(r, step.name, [file, ...step.args.filter((a) => a.endsWith('.onnx'))]);
      results[step.name] = r.code;
      if (r.code !== 0) messages[step.name] = r.err.split('\n')[0].slice(0, 300);
      if (verdict) {
        // once more with --debug for the stack trace
        if (r.code === 3) {
          const again = await run(args, true);
          problems.push(`${verdict}\n${again.err.slice(0, 3000)}`);
        } else problems.push(verdict);
      }
      if (r.code === 0 && out) {
        if (!existsSync(out)) problems.push(`${step.name}: exit 0 but no ${step.out} was written`);
        else {
          const text = readFileSync(out, 'utf8');
          if (step.out.endsWith('.json')) {
            try {
              const rep = JSON.parse(text);
              if (rep.schema !== 'netmoments.analyze/1') problems.push(`${step.name}: the report's schema is ${rep.schema}`);
              for (const res of rep.results ?? []) {
                if (!Array.isArray(res.mean) || res.mean.some((v) => typeof v !== 'number' || !Number.isFinite(v))) {
                  problems.push(`${step.name}: exit 0 with a non-finite mean in the report: ${JSON.stringify(res.mean).slice(0, 200)}`);
                  break;
                }
              }
            } catch (e) {
              problems.push(`${step.name}: exit 0 but the report is not JSON: ${e.message}`);
            }
          } else if (text.length === 0) problems.push(`${step.name}: exit 0 with an empty report`);
          rmSync(out, { force: true });
        }
      }
      if (step.name === 'inspect' && r.code === 0 && step.args.includes('--json')) {
        try {
          const rep = JSON.parse(r.out);
          if (rep.schema !== 'netmoments.inspect/1') problems.push(`inspect: schema ${rep.schema}`);
        } catch (e) {
          problems.push(`inspect: exit 0 but stdout is not JSON: ${e.message}`);
        }
      }
      const extra = leftovers(dir, inputs);
      if (extra.length > 0) {
        problems.push(`${step.name}: exit ${r.code} left ${extra.join(', ')} behind`);
        for (const f of extra) rmSync(join(dir, f), { recursive: true, force: true });
      }
      r = undefined;
    }
  } catch (e) {
    problems.push(`the worker failed on the case: ${e instanceof Error ? e.stack : String(e)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { id: c.id, ok: problems.length === 0, problems, results, messages };
}

process.on('uncaughtException', (e) => {
  realStderrWrite(`fuzz worker: uncaught exception: ${e?.stack ?? e}\n`);
  process.send?.({ type: 'crash', message: `uncaught exception: ${e?.stack ?? e}` });
  process.exit(70);
});
process.on('unhandledRejection', (e) => {
  realStderrWrite(`fuzz worker: unhandled rejection: ${e?.stack ?? e}\n`);
  process.send?.({ type: 'crash', message: `unhandled rejection: ${e?.stack ?? e}` });
  process.exit(71);
});

process.on('message', async (msg) => {
  if (msg.type === 'exit') {
    process.disconnect?.();
    process.exit(0);
  }
  if (msg.type === 'case') {
    const t = performance.now();
    const res = await runCase(msg.case);
    process.send({ type: 'result', ...res, ms: performance.now() - t });
  }
});
process.send({ type: 'ready' });
