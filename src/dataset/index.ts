/**
 * The dataset runner: a report over every input of a dataset (runner.ts), cut into chunks
 * (chunk.ts) that are checkpointed (checkpoint.ts) and shared out to shards (shards.ts) whose
 * outputs `merge` joins (merge.ts). The outputs are formatted and written by src/report/.
 */
export { runReport } from './runner.js';
export { parseLinearize, type LinearizeSpec, type ReportOptions, type ReportResult } from './options.js';
export { parseShard, shardChunks } from './shards.js';
export { CHECKPOINT_DIR } from './checkpoint.js';
export { mergeReports } from './merge.js';
export { mcIndices } from './chunk.js';
export { datasetRange, parseSigmaList, runSweep } from './sweep.js';
