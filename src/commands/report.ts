/**
 * `netmoments report MODEL --data D [--labels L] (noise) [--linearize input|kmeans:K|bank:DIR] --out-dir OUT [--html]`:
 * closed-form moments, class and flip probabilities over a whole dataset; writes samples.csv,
 * summary.json (netmoments.report/1) and summary.md, and with --html report.html (one
 * self-contained page, report/html.ts) beside them. Checkpoints as it goes (--resume continues),
 * --shard I/N does a deterministic part for `netmoments merge`. The options are shared with `gate`
 * (datasetOptions.ts, datasetRun.ts).
 */
import { join } from 'node:path';
import type { CommandModule } from 'yargs';
import { imageGeometry, parseLayoutChoice } from '../data/layout.js';
import { reportHtml } from '../report/html.js';
import { writeFileAtomic } from '../util/files.js';
import { datasetRunOptions, type DatasetRunArgs } from './datasetOptions.js';
import { runDatasetReport, runLine } from './datasetRun.js';
import { preprocessingArgs, stderrWriter } from './common.js';
import { displayPreprocessing } from '../data/inputs.js';

interface ReportArgs extends DatasetRunArgs {
  'out-dir': string;
  html?: boolean;
}

export const reportCommand: CommandModule<object, ReportArgs> = {
  command: 'report <model>',
  describe: 'Moments, class and flip probabilities over a dataset: samples.csv, summary.json, summary.md (and report.html)',
  builder: (y) =>
    datasetRunOptions(y)
      .option('out-dir', {
        type: 'string',
        demandOption: true,
        describe: 'Folder for samples.csv, summary.json, summary.md (and the checkpoint while running)',
        group: 'Report:',
      })
      .option('html', {
        type: 'boolean',
        describe:
          'Also write report.html: one self-contained page (summary, per-class table and flip-rate chart, least robust inputs with their trust verdicts)',
        group: 'Report:',
      })
      .example('$0 report fixtures/lenet.onnx --data fixtures/mnist/digits-10.npy --labels fixtures/mnist/labels-10.npy --sigma 8 --out-dir rep/', '')
      .example(
        '$0 report fixtures/lenet.onnx --data fixtures/mnist/digits-10.npy --sigma 8 --chunk 5 --shard 0/2 --out-dir shard-0/',
        'the first of 2 shards (netmoments merge combines them)',
      )
      .example('$0 report fixtures/lenet.onnx --data fixtures/mnist/digits-10.npy --sigma 8 --chunk 5 --shard 1/2 --out-dir shard-1/', 'the second') as never,
  handler: async (argv) => {
    const { result, inputs, inputShape, model } = await runDatasetReport(argv, argv['out-dir'], 'report');
    if (argv.html) {
      if (result.alreadyComplete) {
        stderrWriter(argv.quiet)(`report.html needs the per-input records, which a finished run does not keep: run without --resume to write it`);
      } else {
        const geometry = imageGeometry(inputShape, parseLayoutChoice(argv.layout));
        const display = displayPreprocessing({ metadata: model.graph.metadata, modelFile: model.file, ...preprocessingArgs(argv) });
        const pictures = geometry?.picture ? { geometry, input: (i: number) => inputs.get(i), display } : undefined;
        writeFileAtomic(join(argv['out-dir'], 'report.html'), reportHtml(result.summary, result.records, pictures));
      }
    }
    if (!argv.quiet) process.stderr.write(`netmoments: report: ${runLine(result, argv['out-dir'])}`);
  },
};
