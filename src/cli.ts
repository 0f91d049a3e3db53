/**
 * The command-line front end: yargs parses, each command in src/commands/ calls the library and
 * writes its report. Exit codes (docs/ARCHITECTURE.md, section 5): 0 success, 1 a gate or check failed,
 * 2 bad usage or bad input (one line naming the file and the problem), 3 internal error.
 */
import yargs, { type Argv } from 'yargs';
import { CheckFailed, EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_INTERNAL, EXIT_OK, NetmomentsError, oneLine } from './errors.js';
import { commands } from './commands/index.js';

// the exit codes and CheckFailed are defined in errors.ts (commands throw CheckFailed without importing the CLI)
export { CheckFailed, EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_INTERNAL, EXIT_OK } from './errors.js';

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
