/**
 * --method, --rank and --diagnostics (analyze, report, gate, fooling, tightness): which engine
 * computes the moments (src/method.ts), how the two-stage diagnostics are computed, and the stderr
 * line that says which engine ran and why.
 */
import type { Argv } from 'yargs';
import type { AnalyzeOptions } from '../analyze.js';
import { wholeNumber } from '../experiments/cli.js';
import { METHOD_CHOICES, type MethodChoice } from '../method.js';
import { FAST_FLIP_DIRECTIONS, FLIP_DIRECTIONS, FULL_DIAGNOSTICS_MAX_INPUT, type Diagnostics } from '../linearize/linearizer.js';

/** --method and --rank: which engine computes the moments (src/method.ts). */
export interface MethodArgs {
  method: MethodChoice;
  rank?: number;
  diagnostics?: Diagnostics;
}

export function methodOptions<T>(y: Argv<T>): Argv<T & MethodArgs> {
  return y
    .option('method', {
      choices: METHOD_CHOICES,
      default: 'auto' as MethodChoice,
      describe:
        "How the moments are computed: 'propagate' (moments through every layer), 'two-stage' (linearization with one ReLU layer kept exact), " +
        "'auto' (propagate when every op has a moment rule and it fits in memory; --relu implies two-stage)",
      group: 'Model:',
    })
    .option('rank', {
      type: 'number',
      describe: 'Propagate: columns of the noise factor carried (default: full rank when it fits the memory limit, else 256, or 128 above 65,536 inputs)',
      group: 'Model:',
    })
    .option('diagnostics', {
      choices: ['none', 'fast', 'full'] as const,
      describe:
        `Two-stage: the expected state changes of the layers held fixed. 'none' skips them; 'full' sums over the noise directions (sketched with ${FLIP_DIRECTIONS} random ones above that); ` +
        `'fast' estimates them from a sketch of ${FAST_FLIP_DIRECTIONS} (reported as an estimate). Default: full for inputs up to ${FULL_DIAGNOSTICS_MAX_INPUT} elements, fast above`,
      group: 'Model:',
    }) as unknown as Argv<T & MethodArgs>;
}

/** The stderr line that says which engine computed the moments and why (after a successful run: errors stay one line). */
export function methodLine(r: { method?: string; methodReason?: string; rank?: number }): string {
  return `method: ${r.method} (${r.methodReason}${r.method === 'propagate' && r.rank !== undefined ? `; noise factor rank ${r.rank}` : ''})`;
}

/** The engine options as AnalyzeOptions takes them, --rank checked. */
export function methodFromArgs(args: MethodArgs): Pick<AnalyzeOptions, 'method' | 'rank' | 'diagnostics'> {
  return {
    method: args.method,
    rank: args.rank === undefined ? undefined : wholeNumber('rank', args.rank, 1),
    ...(args.diagnostics ? { diagnostics: args.diagnostics } : {}),
  };
}
