/**
 * `netmoments merge DIR... --out-dir OUT [--html]`: combine the outputs of `report --shard I/N` (all N
 * shards of one run) into the report an unsharded run writes, byte for byte; with --html also
 * report.html (report/html.ts; without the input pictures, which need the data).
 */
import { join } from 'node:path';
import type { CommandModule } from 'yargs';
import { mergeReports } from '../dataset/index.js';
import { reportHtml } from '../report/html.js';
import { writeReportOutputs } from '../report/outputs.js';
import { writeFileAtomic } from '../util/files.js';

interface MergeArgs {
  dirs: string[];
  'out-dir': string;
  html?: boolean;
  quiet?: boolean;
}

export const mergeCommand: CommandModule<object, MergeArgs> = {
  command: 'merge <dirs..>',
  describe: 'Combine the shard folders of `report --shard I/N` into one report, identical to an unsharded run',
  builder: (y) =>
    y
      .positional('dirs', { type: 'string', array: true, demandOption: true, describe: 'The shard folders (all N of them, any order)' })
      .option('out-dir', { type: 'string', demandOption: true, describe: 'Folder for the merged samples.csv, summary.json, summary.md' })
      .option('html', { type: 'boolean', describe: 'Also write report.html, the self-contained page of `report --html` (without the input pictures)' })
      .example('$0 merge shard-0 shard-1 --out-dir report/', '') as never,
  handler: (argv) => {
    const { files, summary, records } = mergeReports(argv.dirs);
    writeReportOutputs(argv['out-dir'], files);
    if (argv.html) writeFileAtomic(join(argv['out-dir'], 'report.html'), reportHtml(summary, records));
    if (!argv.quiet) {
      process.stderr.write(`netmoments: merged ${argv.dirs.length} shard(s), ${summary.inputs} inputs -> ${argv['out-dir']}\n`);
    }
  },
};
