/**
 * `netmoments report MODEL --data D [--labels L] (noise) [--linearize input|kmeans:K|bank:DIR] --out-dir OUT`:
 * closed-form moments, class and flip probabilities over a whole dataset; writes samples.csv,
 * summary.json (netmoments.report/1) and summary.md. Checkpoints as it goes (--resume continues),
 * --shard I/N does a deterministic part for `netmoments merge`. The options are shared with `gate`
 * (datasetOptions.ts, datasetRun.ts).
 */
import type { CommandModule } from 'yargs';
import { datasetRunOptions, type DatasetRunArgs } from './datasetOptions.js';
import { runDatasetReport, runLine } from './datasetRun.js';

interface ReportArgs extends DatasetRunArgs {
  'out-dir': string;
}

export const reportCommand: CommandModule<object, ReportArgs> = {
  command: 'report <model>',
  describe: 'Moments, class and flip probabilities over a dataset: samples.csv, summary.json, summary.md',
  builder: (y) =>
    datasetRunOptions(y)
      .option('out-dir', {
        type: 'string',
        demandOption: true,
        describe: 'Folder for samples.csv, summary.json, summary.md (and the checkpoint while running)',
        group: 'Report:',
      })
      .example('$0 report fixtures/lenet.onnx --data fixtures/mnist/digits-10.npy --labels fixtures/mnist/labels-10.npy --sigma 8 --out-dir rep/', '')
      .example(
        '$0 report fixtures/lenet.onnx --data fixtures/mnist/digits-10.npy --sigma 8 --chunk 5 --shard 0/2 --out-dir shard-0/',
        'the first of 2 shards (netmoments merge combines them)',
      )
      .example('$0 report fixtures/lenet.onnx --data fixtures/mnist/digits-10.npy --sigma 8 --chunk 5 --shard 1/2 --out-dir shard-1/', 'the second') as never,
  handler: async (argv) => {
    const { result } = await runDatasetReport(argv, argv['out-dir'], 'report');
    if (!argv.quiet) process.stderr.write(`netmoments: report: ${runLine(result, argv['out-dir'])}`);
  },
};
