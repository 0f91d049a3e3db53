/**
 * What the commands share at run time: loading the model and opening its inputs (with the model's
 * preprocessing), the session settings, progress bars, warnings and writing a report to a file
 * (atomically) or stdout.
 */
import type { Dataset } from '../data/dataset.js';
import { inputPreprocessing, openModelInputs } from '../data/inputs.js';
import { parseLayoutChoice, type LayoutChoice } from '../data/layout.js';
import type { Preprocessing } from '../data/preprocess.js';
import { NetmomentsError } from '../errors.js';
import { firstIndices, wholeNumber } from '../experiments/cli.js';
import type { JacobianMode } from '../linearize/jacobian.js';
import { Linearizer } from '../linearize/linearizer.js';
import { loadModel, type LoadedModel } from '../onnx/load.js';
import { progressBar } from '../report/progress.js';
import type { Provider } from '../runtime/session.js';
import { writeFileAtomic } from '../util/files.js';
import { inputChoice, type InputFeedArgs } from './inputFeeds.js';
import { preprocessingArgs } from './preprocessOptions.js';

/** The options read here: a part of ModelRunArgs and SelectionArgs (common.ts, which re-exports this file). */
interface ModelRunArgs {
  relu?: string;
  output?: string;
  threads?: number;
  workers?: number;
  scale?: number;
  offset?: number;
  mean?: string;
  std?: string;
  layout?: LayoutChoice;
}
interface SelectionArgs {
  labels?: string;
  start: number;
}

/** Preprocessing for image-like sources: --scale/--offset/--mean/--std, else the model's metadata, else identity. */
export function preprocessingFor(model: LoadedModel, args: ModelRunArgs, warn?: (m: string) => void): Preprocessing {
  return inputPreprocessing({ metadata: model.graph.metadata, modelFile: model.file, ...preprocessingArgs(args), onWarning: warn });
}

/** Open inputs for a model (data/inputs.ts): image sources get the preprocessing, PNG pixels the --layout. */
export function openInputs(path: string, model: LoadedModel, inputShape: number[], args: ModelRunArgs, labels?: string, warn?: (m: string) => void): Dataset {
  const layout = parseLayoutChoice(args.layout);
  return openModelInputs(path, {
    inputShape,
    layout,
    labels,
    metadata: model.graph.metadata,
    modelFile: model.file,
    ...preprocessingArgs(args),
    onWarning: warn,
  });
}

/**
 * The model, its input's shape without the batch axis, and that shape's element count n; what
 * loading noted or rewrote (a batch axis added or reduced to 1, initializers read as constants,
 * nodes re-sorted) goes to `warn`.
 */
export function loadModelInput(file: string, warn: (m: string) => void, args: InputFeedArgs = {}): { model: LoadedModel; inputShape: number[]; n: number } {
  const model = loadModel(file, { inputs: inputChoice(args) });
  for (const w of model.warnings) warn(`${file}: note: ${w}`);
  const inputShape = Linearizer.inputShapeOf(model);
  return { model, inputShape, n: inputShape.reduce((a, b) => a * b, 1) };
}

/** `source` opened for the model, and the inputs --start and `count` pick from it (a usage error when none). */
export function selectInputs(
  source: string,
  model: LoadedModel,
  inputShape: number[],
  args: ModelRunArgs & SelectionArgs,
  count: number | undefined,
  warn: (m: string) => void,
) {
  const ds = openInputs(source, model, inputShape, args, args.labels, warn);
  const indices = firstIndices(ds.size, count, source, wholeNumber('start', args.start, 0));
  if (indices.length === 0) throw new NetmomentsError('holds no inputs', { file: source });
  return { ds, indices };
}

/** Split point, output tensor, Jacobian engine, threads, provider and warnings: the session settings of every command that runs the model. */
export function sessionOptions(args: ModelRunArgs & { jacobian?: JacobianMode; provider?: Provider }, warn: (m: string) => void) {
  return {
    relu: args.relu,
    output: args.output,
    jacobian: args.jacobian,
    threads: args.threads,
    workers: args.workers,
    provider: args.provider,
    onWarning: warn,
  };
}

/**
 * `run` with a progress bar on stderr (none when `quiet` or stderr is no terminal), updated with the
 * work done; `stop` takes the bar off early (a SIGINT handler's first step, before its message).
 */
export async function withProgress<T>(
  quiet: boolean | undefined,
  label: string,
  total: number,
  run: (update: (done: number) => void, stop: () => void) => Promise<T>,
): Promise<T> {
  const bar = quiet ? undefined : progressBar(label, total);
  try {
    return await run(
      (done) => bar?.update(done),
      () => bar?.stop(),
    );
  } finally {
    bar?.stop();
  }
}

/**
 * The one wording of an interrupted run (report, gate, bank): "interrupted; <what is kept>: run the
 * same command with --resume to continue" for a run that checkpoints, "... again to start over" for
 * one that does not.
 */
export function interruptedLine(kept: string, resumable: boolean): string {
  return `\nnetmoments: interrupted; ${kept}: run the same command ${resumable ? 'with --resume to continue' : 'again to start over'}\n`;
}

/** Write a report to `out` atomically, or to stdout. */
export function emit(text: string, out?: string): void {
  if (out) writeFileAtomic(out, text);
  else process.stdout.write(text);
}

/** One-line warnings to stderr (unless --quiet), each distinct message once per run. */
export function stderrWriter(quiet?: boolean): (m: string) => void {
  // several model parts and sessions can meet the same thing (an op without a tangent rule below
  // the cut is seen by the main and the flip-counting engine): say each message once
  const said = new Set<string>();
  return (m: string) => {
    if (quiet || said.has(m)) return;
    said.add(m);
    process.stderr.write(`netmoments: ${printableText(m)}\n`);
  };
}

/** Text that quotes names from a model, with control characters other than newlines shown as '?' (no terminal escapes). */
export function printableText(s: string): string {
  return s.replace(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/g, '?');
}
