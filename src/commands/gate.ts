/**
 * `netmoments gate MODEL --data D --labels L (noise) --max-flip-rate F [--min-accuracy A]`: the
 * dataset report's flip rate (and expected accuracy under noise) against thresholds, for CI.
 * Exit 0 when the model holds, 1 when it does not, 2 on bad input. Writes JUnit XML (--junit) and
 * appends a Markdown summary to $GITHUB_STEP_SUMMARY when that is set.
 */
import { appendFileSync } from 'node:fs';
import type { CommandModule } from 'yargs';
import { CheckFailed, NetmomentsError } from '../errors.js';
import { checkValue, gateChecks, gateJunit, gateMarkdown } from '../report/gate.js';
import { flipTolerance } from '../trust.js';
import { writeFileAtomic } from '../util/files.js';
import { datasetRunOptions, type DatasetRunArgs } from './datasetOptions.js';
import { runDatasetReport, runLine } from './datasetRun.js';

interface GateArgs extends DatasetRunArgs {
  'max-flip-rate': number;
  'min-accuracy'?: number;
  junit?: string;
  'allow-untrusted'?: boolean;
}

function fraction(v: number | undefined, name: string): void {
  if (v !== undefined && !(Number.isFinite(v) && v >= 0 && v <= 1)) {
    throw new NetmomentsError(`--${name} is a fraction in [0, 1] (0.02 for 2%), got ${v}`, { code: 'BAD_USAGE' });
  }
}

export const gateCommand: CommandModule<object, GateArgs> = {
  command: 'gate <model>',
  describe: 'CI check: fail (exit 1) when the flip rate under noise is too high or the accuracy under noise too low',
  builder: (y) =>
    datasetRunOptions(y)
      .option('max-flip-rate', {
        type: 'number',
        demandOption: true,
        describe: 'Largest allowed flip rate (mean P(class changes under noise)), a fraction: 0.02 is 2%',
        group: 'Gate:',
      })
      .option('min-accuracy', { type: 'number', describe: 'Smallest allowed expected accuracy under noise, a fraction (needs labels)', group: 'Gate:' })
      .option('junit', { type: 'string', describe: 'Write the checks as JUnit XML to this file', group: 'Gate:' })
      .option('allow-untrusted', {
        type: 'boolean',
        describe: 'Do not fail on inputs whose trust verdict is "fail" (their numbers are wrong; "warn" never fails the gate)',
        group: 'Gate:',
      })
      .option('out-dir', { type: 'string', describe: 'Also keep the full report (samples.csv, summary.json, summary.md) here', group: 'Report:' })
      .example(
        '$0 gate fixtures/lenet.onnx --data fixtures/mnist/digits-10.npy --labels fixtures/mnist/labels-10.npy --sigma 8 --max-flip-rate 0.02 --min-accuracy 0.95 --junit gate.xml',
        '',
      )
      .example(
        '$0 gate fixtures/lenet.onnx --data fixtures/mnist/by-class --sigma 8 --max-flip-rate 0.02 --min-accuracy 0.95',
        'class folders D/CLASS/*.png: labels from the folder names',
      ) as never,
  handler: async (argv) => {
    fraction(argv['max-flip-rate'], 'max-flip-rate');
    fraction(argv['min-accuracy'], 'min-accuracy');
    if (argv.variance === 'none')
      throw new NetmomentsError('the gate needs the flip rate, which needs the variance: drop --variance none', { code: 'BAD_USAGE' });
    const { result } = await runDatasetReport(argv, argv['out-dir'], 'gate', (ds) => {
      if (argv['min-accuracy'] !== undefined && !ds.labels) {
        throw new NetmomentsError('--min-accuracy needs labels: give --labels (the data has none beside it)', { file: argv.data, code: 'BAD_USAGE' });
      }
    });
    const s = result.summary;
    const f = s.tightness?.flip;
    const checks = gateChecks(s, {
      maxFlipRate: argv['max-flip-rate'],
      minAccuracy: argv['min-accuracy'],
      allowUntrusted: argv['allow-untrusted'],
      // the pooled Monte Carlo flip rate of the sampled inputs, its interval from all their samples
      mcFlipTolerance: f && s.tightness ? flipTolerance(f.monteCarlo, s.tightness.samples * s.tightness.inputs) : undefined,
    });
    if (argv.junit) writeFileAtomic(argv.junit, gateJunit(s, checks, result.seconds));
    const md = gateMarkdown(s, checks);
    const stepSummary = process.env.GITHUB_STEP_SUMMARY;
    if (stepSummary) {
      try {
        appendFileSync(stepSummary, md);
      } catch (e) {
        throw new NetmomentsError(`cannot append the summary (${(e as NodeJS.ErrnoException).code}); it is $GITHUB_STEP_SUMMARY`, { file: stepSummary });
      }
    }
    if (!argv.quiet) {
      process.stderr.write(`netmoments: gate: ${runLine(result, argv['out-dir'])}`);
      for (const c of checks) process.stderr.write(`  ${c.passed ? 'pass' : 'FAIL'}: ${c.passed ? `${c.name} (measured ${checkValue(c)})` : c.message}\n`);
    }
    const failed = checks.filter((c) => !c.passed);
    if (failed.length > 0) throw new CheckFailed(`gate failed: ${failed.map((c) => c.message).join('; ')}`);
  },
};
