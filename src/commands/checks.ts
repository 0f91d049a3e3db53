/**
 * The checks a command makes before it loads the model (milliseconds, not the seconds a model
 * takes): numbers, the noise options, and that the files the options name exist.
 */
import { existsSync } from 'node:fs';
import { NetmomentsError } from '../errors.js';
import { wholeNumber } from '../experiments/cli.js';
import { checkSigma, parseWindow } from '../noise.js';

/** The options read here (a part of common.ts's NoiseArgs, ModelRunArgs and SelectionArgs). */
interface CheckedArgs {
  threads?: number;
  workers?: number;
  sigma?: number;
  window?: string;
  'noise-var'?: string;
  'noise-cov'?: string;
  'noise-mean'?: string;
}

/** A file or folder an option names, checked before the model loads: a one-line error naming it when it is not there. */
export function checkExists(path: string | undefined, missing = 'no such file or folder'): void {
  if (path !== undefined && !existsSync(path)) throw new NetmomentsError(missing, { file: path });
}

/**
 * The noise options that can be checked without the model, before it loads (milliseconds, not the
 * seconds a model takes): --sigma, the --window syntax, that the noise files exist.
 */
export function checkNoiseArgs(args: CheckedArgs): void {
  if (args.sigma !== undefined) checkSigma(args.sigma);
  if (args.window) parseWindow(args.window);
  for (const file of [args['noise-var'], args['noise-cov'], args['noise-mean']]) checkExists(file);
}

/**
 * What can be checked before the model loads: --threads, --count, the noise options when the
 * command has them, and that the files --input, --data, --labels and --perturbation name exist.
 * The count when given.
 */
export function checkRunArgs(
  args: CheckedArgs & { count?: number; input?: string; data?: string; labels?: string; perturbation?: string },
): number | undefined {
  if (args.threads !== undefined) wholeNumber('threads', args.threads, 1);
  if (args.workers !== undefined) wholeNumber('workers', args.workers, 0);
  checkNoiseArgs(args);
  for (const file of [args.input, args.data, args.labels, args.perturbation]) checkExists(file);
  return args.count === undefined ? undefined : wholeNumber('count', args.count, 1);
}
