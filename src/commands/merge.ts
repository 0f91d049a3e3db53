/**
 * `netmoments merge DIR... --out-dir OUT`: combine the outputs of `report --shard I/N` (all N
 * shards of one run) into the report an unsharded run writes, byte for byte.
 */
import type { CommandModule } from 'yargs';
import { mergeReports } from '../dataset/index.js';
import { writeReportOutputs } from '../report/outputs.js';

interface MergeArgs {
  dirs: string[];
  'out-dir': string;
  quiet?: boolean;
}

export const mergeCommand: CommandModule<object, MergeArgs> = {
  command: 'merge <dirs..>',
  describe: 'Combine the shard folders of `report --shard I/N` into one report, identical to an unsharded run',
  builder: (y) =>
    y
      .positional('dirs', { type: 'string', array: true, demandOption: true, describe: 'The shard folders (all N of them, any order)' })
      .option('out-dir', { type: 'string', demandOption: true, describe: 'Folder for the merged samples.csv, summary.json, summary.md' })
      .example('$0 merge shard-0 shard-1 --out-dir report/', '') as never,
  handler: (argv) => {
    const { files, summary } = mergeReports(argv.dirs);
    writeReportOutputs(argv['out-dir'], files);
    if (!argv.quiet) {
      process.stderr.write(`netmoments: merged ${argv.dirs.length} shard(s), ${summary.inputs} inputs -> ${argv['out-dir']}\n`);
    }
  },
};
