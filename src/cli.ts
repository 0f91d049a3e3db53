/**
 * The command-line front end: yargs parses, each command in src/commands/ calls the library and
 * writes its report. Exit codes (docs/ARCHITECTURE.md, section 5): 0 success, 1 a gate or check failed,
 * 2 bad usage or bad input (one line naming the file and the problem), 3 internal error.
 */
import yargs, { type Argv } from 'yargs';
import { CheckFailed, EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_INTERNAL, EXIT_OK, NetmomentsError, oneLine } from './errors.js';
import { VERSION } from './analyze.js';
import { commands } from './commands/index.js';
import { closestName } from './util/suggest.js';

// the exit codes and CheckFailed are defined in errors.ts (commands throw CheckFailed without importing the CLI)
export { CheckFailed, EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_INTERNAL, EXIT_OK } from './errors.js';

class UsageError extends Error {}

/**
 * yargs's "Unknown argument(s): a, b" with a "did you mean --x?" for each name close to an option
 * the command knows (`known`: its option names, kebab-case as in --help). A name close to none of
 * them but an option of other commands (`elsewhere`: command -> its options) says which take it
 * ("count (not an option of report; attack, certify take it)"). yargs also lists the camelCase twin
 * of a kebab-case name (noise-vr, noiseVr): the twin is dropped.
 */
export function withSuggestions(
  message: string,
  known: readonly string[],
  elsewhere?: { command: string; options: Record<string, readonly string[]> },
): string {
  const m = /^Unknown arguments?: (.*)$/s.exec(message);
  if (!m) return message;
  const names = m[1].split(', ');
  const camel = (s: string) => s.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
  const shown = names.filter((n) => !names.some((o) => o !== n && o.includes('-') && camel(o) === n));
  const options = known.filter((k) => k.length > 1 && !/[A-Z]/.test(k));
  const parts = shown.map((n) => {
    const bare = n.replace(/^-+/, '');
    const near = closestName(bare, options);
    if (near !== undefined) return `${n} (did you mean --${near}?)`;
    const takers = Object.entries(elsewhere?.options ?? {})
      .filter(([c, opts]) => c !== elsewhere!.command && opts.includes(bare))
      .map(([c]) => c);
    if (takers.length === 0) return n;
    const list = takers.length > 5 ? `${takers.slice(0, 4).join(', ')} and ${takers.length - 4} more` : takers.join(', ');
    return `${n} (not an option of ${elsewhere!.command}; ${list} take${takers.length === 1 ? 's' : ''} it)`;
  });
  return `Unknown argument${shown.length > 1 ? 's' : ''}: ${parts.join(', ')}`;
}

/**
 * The --names in `argv` (after the command) that are none of `known` (kebab-case or camelCase,
 * --no-X for a known X): yargs reports missing required options before unknown ones, so a run
 * with both would otherwise hear only of the first.
 */
export function unknownOptions(argv: readonly string[], known: readonly string[]): string[] {
  const all = new Set([...known, 'help', 'version', 'debug', 'quiet']);
  const out: string[] = [];
  for (const a of argv) {
    if (a === '--') break;
    const m = /^--([^=]+)/.exec(a);
    if (!m) continue;
    const name = m[1];
    if (all.has(name) || (name.startsWith('no-') && all.has(name.slice(3))) || out.includes(name)) continue;
    out.push(name);
  }
  return out;
}

/** Each command's option names (kebab-case, as in its --help), read from its yargs builder. */
export function commandOptions(): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const c of commands) {
    const y = yargs([]);
    const built = typeof c.builder === 'function' ? ((c.builder as (y: Argv) => Argv | void)(y) ?? y) : y.options((c.builder ?? {}) as never);
    const keys = Object.keys((built as unknown as { getOptions(): { key: Record<string, unknown> } }).getOptions().key);
    out[String(c.command).split(' ')[0]] = keys.filter((k) => !/[A-Z]/.test(k));
  }
  return out;
}

/**
 * A number option given something that is not a number (yargs parses `--sigma abc` as NaN): a
 * usage error that quotes what was typed, before any check could print "NaN".
 */
export function rejectNotANumber(parsed: Record<string, unknown>, argv: readonly string[]): void {
  for (const [key, value] of Object.entries(parsed)) {
    if (typeof value !== 'number' || !Number.isNaN(value) || /[A-Z]/.test(key) || key === '$0') continue;
    const at = argv.findIndex((a) => a === `--${key}` || a.startsWith(`--${key}=`));
    const typed = at < 0 ? undefined : argv[at].includes('=') ? argv[at].slice(argv[at].indexOf('=') + 1) : argv[at + 1];
    throw new NetmomentsError(`--${key} takes a number, got ${typed === undefined ? 'none' : `'${typed}'`}`, { code: 'BAD_USAGE' });
  }
}

/** `netmoments help [CMD]`: CMD's --help (the overview without CMD). */
const helpCommand = {
  command: 'help [command]',
  describe: 'Show the help of a command (netmoments help analyze is netmoments analyze --help)',
  builder: (y: Argv) => y.positional('command', { type: 'string', describe: 'the command' }),
  handler: async (argv: { command?: string }) => {
    const names = commands.map((c) => String(c.command).split(' ')[0]);
    if (argv.command !== undefined && !names.includes(argv.command)) {
      const near = closestName(argv.command, names);
      throw new NetmomentsError(`no command '${argv.command}'${near ? ` (did you mean ${near}?)` : ''}; the commands: ${names.join(', ')}`, {
        code: 'BAD_USAGE',
      });
    }
    process.exitCode = await main(argv.command ? [argv.command, '--help'] : ['--help']);
  },
};

export async function main(argv: string[]): Promise<number> {
  const debug = argv.includes('--debug');
  let usageError: string | undefined;
  let parser: Argv = yargs(argv)
    .scriptName('netmoments')
    .usage(
      'netmoments: closed-form mean, variance and covariance of a piecewise-linear ONNX network\n' +
        'under Gaussian input noise x ~ N(mu, Sigma), without sampling.\n\nUsage: $0 <command> [options]',
    )
    .option('debug', { type: 'boolean', describe: 'Show stack traces of errors', global: true })
    .option('quiet', { alias: 'q', type: 'boolean', describe: 'No progress bars or summaries on stderr', global: true })
    .demandCommand(1, 'Name a command (see --help).')
    .strict()
    .recommendCommands()
    .help()
    .alias('h', 'help')
    // the package's own version: yargs's .version() reads the package.json nearest the working directory
    .version(VERSION)
    .wrap(Math.min(110, process.stdout.columns || 100))
    .exitProcess(false)
    .fail((msg, err, y) => {
      if (err) throw err;
      // stop here: without the throw yargs would go on and run the command's handler
      // the usage instance yargs passes knows the described options of the command that failed
      const described = Object.keys((y as unknown as { getDescriptions?: () => Record<string, unknown> }).getDescriptions?.() ?? {});
      const names = commands.map((c) => String(c.command).split(' ')[0]);
      const command = argv.find((a) => names.includes(a));
      const elsewhere = command === undefined ? undefined : { command, options: commandOptions() };
      usageError = msg ? withSuggestions(msg, described, elsewhere) : msg;
      // missing required options hide unknown ones: say both
      const unknown = command !== undefined && msg?.startsWith('Missing required argument') ? unknownOptions(argv, described) : [];
      if (unknown.length > 0)
        usageError += `; ${withSuggestions(`Unknown argument${unknown.length > 1 ? 's' : ''}: ${unknown.join(', ')}`, described, elsewhere)}`;
      throw new UsageError(msg);
    });
  parser = parser.middleware((parsed) => rejectNotANumber(parsed, argv), true);
  for (const c of commands) parser = parser.command(c);
  parser = parser.command(helpCommand as never);
  try {
    await parser.parseAsync();
    if (usageError !== undefined) {
      process.stderr.write(`netmoments: ${oneLine(usageError)} (see --help)\n`);
      return EXIT_BAD_INPUT;
    }
    return process.exitCode === undefined ? EXIT_OK : Number(process.exitCode);
  } catch (e) {
    if (usageError !== undefined) {
      process.stderr.write(`netmoments: ${oneLine(usageError)} (see --help)\n`);
      return EXIT_BAD_INPUT;
    }
    if (e instanceof CheckFailed) {
      if (e.message) process.stderr.write(`netmoments: ${oneLine(e.message)}\n`);
      return EXIT_CHECK_FAILED;
    }
    if (e instanceof NetmomentsError) {
      process.stderr.write(`netmoments: ${e.describe()}\n`);
      if (debug && e.stack) process.stderr.write(`${e.stack}\n`);
      return EXIT_BAD_INPUT;
    }
    const msg = e instanceof Error ? e.message : String(e);
    process.stderr.write(`netmoments: internal error: ${oneLine(msg)}${debug ? '' : ' (run with --debug for the stack trace)'}\n`);
    if (debug && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
    return EXIT_INTERNAL;
  }
}
