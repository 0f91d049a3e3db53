/** Writing a dataset report's output folder. */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeFilesAtomic } from '../util/files.js';

/**
 * Write the outputs (src/report/summary.ts reportFiles) into `outDir`: staged, then renamed into
 * place with summary.json last (it holds the sha256 of samples.csv, so a folder with a
 * summary.json is complete), and a stale records.ndjson of an earlier sharded run removed.
 */
export function writeReportOutputs(outDir: string, files: Record<string, string>): void {
  const { 'summary.json': summary, ...rest } = files;
  writeFilesAtomic(outDir, { ...rest, 'summary.json': summary });
  // an empty shard (fewer chunks than shards) writes an empty records.ndjson, which merge reads as a complete shard of no inputs
  if (files['records.ndjson'] === undefined) rmSync(join(outDir, 'records.ndjson'), { force: true });
}
