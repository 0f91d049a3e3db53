/**
 * Running the dataset report for `report` and `gate`: the parsed options checked and turned into
 * the runner's, progress bars, the message on SIGINT, and the one-line account of the run.
 */
import { NetmomentsError } from '../errors.js';
import type { LoadedModel } from '../onnx/load.js';
import { sharedOrtLinearAlgebra } from '../runtime/linalg.js';
import { parseLinearize, parseShard, runReport, CHECKPOINT_DIR, type ReportResult } from '../dataset/index.js';
import { describeRun } from '../report/summary.js';
import { progressBar, type Progress } from '../report/progress.js';
import { checkRunArgs, loadModelInput, methodFromArgs, methodLine, noiseFromArgs, openInputs, sessionOptions, stderrWriter } from './common.js';
import type { DatasetRunArgs } from './datasetOptions.js';
import { interruptedLine } from './run.js';
import { sampleCount } from '../experiments/cli.js';

/** Run the report engine from parsed options, with progress bars and a SIGINT message. */
export async function runDatasetReport(
  argv: DatasetRunArgs,
  outDir: string | undefined,
  label: string,
  check?: (ds: { labels?: Int32Array }) => void,
): Promise<{ result: ReportResult; model: LoadedModel; inputs: { get(i: number): Float32Array }; inputShape: number[] }> {
  const warn = stderrWriter(argv.quiet);
  const int = (v: number | undefined, name: string, min: number) => {
    if (v !== undefined && !(Number.isInteger(v) && v >= min))
      throw new NetmomentsError(`--${name} must be a whole number >= ${min}, got ${v}`, { code: 'BAD_USAGE' });
  };
  int(argv.mc, 'mc', 0);
  int(argv['mc-inputs'], 'mc-inputs', 1);
  sampleCount('trust-check', argv['trust-check']);
  int(argv.chunk, 'chunk', 1);
  int(argv['kmeans-iterations'], 'kmeans-iterations', 1);
  checkRunArgs(argv);
  int(argv['probability-samples'], 'probability-samples', 128);
  const linearize = parseLinearize(argv.linearize);
  const shard = argv.shard !== undefined ? parseShard(argv.shard) : undefined;
  if (argv.resume && !outDir) throw new NetmomentsError('--resume needs --out-dir (where the checkpoint is)', { code: 'BAD_USAGE' });
  const { model, inputShape, n } = loadModelInput(argv.model, warn, argv);
  const ds = openInputs(argv.data, model, inputShape, argv, argv.labels, warn);
  check?.(ds);
  const noise = noiseFromArgs(argv, n, warn);

  let bar: Progress | undefined;
  let state = { phase: 'setup', total: 0, done: 0 };
  const onSigint = () => {
    bar?.stop();
    if (outDir && state.phase === 'inputs') {
      process.stderr.write(interruptedLine(`${state.done} of ${state.total} inputs are checkpointed in ${outDir}/${CHECKPOINT_DIR}`, true));
    } else if (outDir) {
      const when = state.phase === 'bank' ? 'while linearizing at the k-means centres' : 'before any input was done';
      process.stderr.write(interruptedLine(`${when}, ${outDir} holds its earlier contents`, true));
    } else process.stderr.write(interruptedLine('nothing was kept (--out-dir keeps a checkpoint)', false));
    process.exit(130);
  };
  process.once('SIGINT', onSigint);
  let result: ReportResult;
  try {
    result = await runReport(model, ds, {
      ...sessionOptions(argv, warn),
      ...methodFromArgs(argv),
      ...noise,
      noiseMeanFile: noise.noiseMeanFile,
      seed: argv.seed,
      linalg: sharedOrtLinearAlgebra({ threads: argv.threads }),
      maxMemory: argv['max-memory'],
      linearize,
      kmeans: { seed: argv.seed, maxIterations: argv['kmeans-iterations'] },
      bankFallback: argv['bank-fallback'],
      variance: argv.variance,
      perLogit: argv['per-logit'],
      mc: argv.mc,
      mcInputs: argv['mc-inputs'],
      trustCheck: argv['trust-check'],
      probabilitySamples: argv['probability-samples'],
      chunk: argv.chunk,
      shard,
      outDir,
      resume: argv.resume,
      dataFile: argv.data,
      labelsFile: argv.labels,
      onPhase: (phase, total, done) => {
        bar?.stop();
        state = { phase, total, done };
        bar = argv.quiet ? undefined : progressBar(phase === 'bank' ? `${label}: linearizing at k-means centres` : `${label}: inputs`, total);
        bar?.update(done);
      },
      onProgress: (done) => {
        state.done = done;
        bar?.update(done);
      },
    });
  } finally {
    bar?.stop();
    process.removeListener('SIGINT', onSigint);
  }
  if (result.summary.method) warn(methodLine(result.summary));
  return { result, model, inputs: ds, inputShape };
}

/** One stderr line on what the run did and how fast. */
export function runLine(r: ReportResult, outDir?: string): string {
  const s = r.summary;
  const rate = r.computed > 0 && r.seconds > 0 ? `, ${(r.computed / r.seconds).toFixed(1)} inputs/s` : '';
  const from = r.resumed > 0 ? ` (${r.resumed} from the checkpoint)` : '';
  const where = outDir ? ` -> ${outDir}` : '';
  const acc = s.accuracy
    ? `clean accuracy ${(100 * s.accuracy.clean).toFixed(2)}%, ` +
      (s.accuracy.underNoise !== null ? `accuracy under noise ${(100 * s.accuracy.underNoise).toFixed(2)}%, ` : '')
    : '';
  const flip = s.flipRate !== null ? `flip rate ${(100 * s.flipRate).toFixed(3)}%` : 'mean only';
  const { noise, linearization } = describeRun(s);
  return `${s.inputs} inputs, ${r.computed} computed in ${r.seconds.toFixed(2)} s (CPU ${r.cpuSeconds.toFixed(2)} s)${rate}${from}${where}\n  ${noise}; ${linearization}\n  ${acc}${flip}\n`;
}
