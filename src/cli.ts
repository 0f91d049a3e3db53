/**
 * The command-line front end: yargs parses, each command in src/commands/ calls the library and
 * writes its report. Exit codes (DESIGN.md section 5): 0 success, 1 a gate or check failed,
 * 2 bad usage or bad input (one line naming the file and the problem), 3 internal error.
 */
import yargs, { type Argv } from 'yargs';
import { NetmomentsError, oneLine } from './errors.js';
import { commands } from './commands/index.js';

export const EXIT_OK = 0;
export const EXIT_CHECK_FAILED = 1;
export const EXIT_BAD_INPUT = 2;
export const EXIT_INTERNAL = 3;

/** Thrown by a command that ran fine but whose check failed (gate): exit 1. */
export class CheckFailed extends Error {}

class UsageError extends Error {}

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
    .version()
    .wrap(Math.min(110, process.stdout.columns || 100))
    .exitProcess(false)
    .fail((msg, err) => {
      if (err) throw err;
      // stop here: without the throw yargs would go on and run the command's handler
      usageError = msg;
      throw new UsageError(msg);
    });
  for (const c of commands) parser = parser.command(c);
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
