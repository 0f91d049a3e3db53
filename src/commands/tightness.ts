/**
 * `netmoments tightness MODEL (--data D | --synthetic) --runs R --mc N [--relu K] --out-dir DIR`
 * and `netmoments tightness --paper --out-dir DIR`: closed form against Monte Carlo through the real
 * model (the paper's Table 1 and Figure 2). Writes DIR/tightness.json (netmoments.tightness/1),
 * DIR/runs.csv (one row per run and output) and one SVG scatter plot per study and quantity.
 */
import type { CommandModule } from 'yargs';
import { NetmomentsError } from '../errors.js';
import { loadModel, loadModelBytes, type LoadedModel } from '../onnx/load.js';
import { Linearizer } from '../linearize/linearizer.js';
import { sharedOrtLinearAlgebra } from '../runtime/linalg.js';
import { paperNets } from '../synthetic/nets.js';
import { VERSION } from '../analyze.js';
import { writeFilesAtomic } from '../report/write.js';
import { progressBar } from '../report/progress.js';
import { parseNumberList } from '../experiments/common.js';
import { csv } from '../util/csv.js';
import { sig, toJson, wholeNumber } from '../experiments/cli.js';
import { tightnessOnData, tightnessPlots, tightnessSynthetic, type TightnessStudy } from '../experiments/tightness.js';
import { modelRunOptions, noiseFromArgs, noiseOptions, openInputs, stderrWriter, type ModelRunArgs, type NoiseArgs } from './common.js';

interface TightnessArgs extends NoiseArgs, ModelRunArgs {
  model?: string;
  data?: string;
  synthetic?: boolean;
  paper?: boolean;
  runs: number;
  start: number;
  mc: number;
  'max-var': string;
  'mean-sd': number;
  seed: number;
  'out-dir': string;
  quiet?: boolean;
}

/** The paper's linearization "at l = 2": the second ReLU, split index 1. */
export const PAPER_RELU = 1;
export const PAPER_REGIMES = [1e-4, 1, 200];

function runsCsv(studies: TightnessStudy[]): string {
  const rows: Array<Array<string | number | null>> = [];
  for (const s of studies) {
    for (const r of s.runDetails) {
      for (let i = 0; i < s.output.size; i++) {
        rows.push([
          s.name,
          r.run,
          r.input ?? null,
          r.maxVariance ?? null,
          i,
          r.analytic.mean[i],
          r.mc.mean[i],
          r.mc.meanStdErr[i],
          r.analytic.variance[i],
          r.analytic.variancePaper[i],
          r.mc.variance[i],
        ]);
      }
    }
  }
  return csv(['study', 'run', 'input', 'max_variance', 'output', 'mean', 'mc_mean', 'mc_mean_stderr', 'variance', 'variance_paper', 'mc_variance'], rows);
}

function summary(s: TightnessStudy): string {
  const f = s.fit;
  const lines = [
    `${s.name}: ${s.runs} runs x ${s.mc} MC samples, ReLU ${s.split.index} (p = ${s.split.width}); slope through origin (R^2): mean ${sig(f.mean.slope, 4)} (${sig(f.mean.r2)}), exact variance ${sig(f.variance.slope, 4)} (${sig(f.variance.r2)}), paper variance ${sig(f.variancePaper.slope, 4)} (${sig(f.variancePaper.r2)})`,
  ];
  for (const row of s.table) {
    lines.push(
      `  g[${row.output}]: MC/analytic mean ${sig(row.meanRatio.mean)} +- ${sig(row.meanRatio.std)}, exact var ${sig(row.varianceRatio.mean)} +- ${sig(row.varianceRatio.std)}, paper var ${sig(row.variancePaperRatio.mean)} +- ${sig(row.variancePaperRatio.std)}; |mean error| ${sig(row.meanErrorSd.mean)} +- ${sig(row.meanErrorSd.std)} output sd`,
    );
  }
  return `${lines.join('\n')}\n`;
}

export const tightnessCommand: CommandModule<object, TightnessArgs> = {
  command: 'tightness [model]',
  describe: 'Closed-form moments against Monte Carlo over many runs: Table 1 ratios and the Figure 2 fit (SVG plots)',
  builder: (y) =>
    modelRunOptions(noiseOptions(y))
      .positional('model', { type: 'string', describe: 'ONNX model (not with --paper)' })
      .option('data', { type: 'string', describe: 'Runs over the inputs of this dataset (.npy, idx, PNG or a folder of PNGs), under the noise options' })
      .option('synthetic', {
        type: 'boolean',
        describe: "Runs at the zero input with random covariances in each --max-var regime (the paper's synthetic study)",
      })
      .option('paper', {
        type: 'boolean',
        describe: "The paper's synthetic study: FC and conv nets of depth 2, 3, 4, split at ReLU 1 (l = 2), regimes 1e-4, 1, 200",
      })
      .option('runs', { type: 'number', default: 20, describe: 'Runs per study (inputs with --data, covariance draws otherwise; the paper used 200)' })
      .option('start', { type: 'number', default: 0, describe: 'With --data: index of the first input (run k analyses input start + k)' })
      .option('mc', { type: 'number', default: 10000, describe: 'Monte Carlo samples per run (the paper used 75000)' })
      .option('max-var', { type: 'string', default: PAPER_REGIMES.join(','), describe: 'Synthetic regimes: comma-separated maximum variances' })
      .option('mean-sd', {
        type: 'number',
        default: 0,
        describe: "Synthetic: draw each run's input mean from N(0, s^2 I) and linearize there (default 0: the zero input, as in the paper)",
      })
      .option('seed', { type: 'number', default: 0, describe: 'Seed of the covariance draws and the Monte Carlo' })
      .option('out-dir', { type: 'string', demandOption: true, describe: 'Folder for tightness.json, runs.csv and the SVG plots' })
      .example(
        '$0 tightness fixtures/lenet.onnx --data fixtures/mnist/digits-100.npy --sigma 8 --runs 100 --mc 10000 --out-dir out/table1',
        'Table 1 on the bundled LeNet',
      )
      .example('$0 tightness --paper --runs 200 --mc 20000 --out-dir out/figure2', 'Figure 2: the synthetic FC and conv nets') as never,
  handler: async (argv) => {
    const warn = stderrWriter(argv.quiet);
    const runs = wholeNumber('runs', argv.runs, 1);
    const mc = wholeNumber('mc', argv.mc, 2);
    const modes = [argv.data !== undefined, !!argv.synthetic, !!argv.paper].filter(Boolean).length;
    if (modes !== 1) throw new NetmomentsError('give exactly one of --data D, --synthetic or --paper', { code: 'BAD_USAGE' });
    if (argv.paper && argv.model) throw new NetmomentsError('--paper builds its own nets: give no model', { code: 'BAD_USAGE', file: argv.model });
    if (!argv.paper && !argv.model) throw new NetmomentsError('name a model (or use --paper)', { code: 'BAD_USAGE' });
    if (argv.threads !== undefined) wholeNumber('threads', argv.threads, 1);
    const regimes = parseNumberList(argv['max-var'], '--max-var');
    for (const v of regimes) if (!(v > 0)) throw new NetmomentsError(`--max-var values must be > 0, got ${v}`, { code: 'BAD_USAGE' });
    const meanSd = Number(argv['mean-sd']);
    if (!(Number.isFinite(meanSd) && meanSd >= 0)) throw new NetmomentsError(`--mean-sd must be a number >= 0, got ${argv['mean-sd']}`, { code: 'BAD_USAGE' });
    const linalg = sharedOrtLinearAlgebra({ threads: argv.threads });
    const common = { runs, mc, seed: argv.seed, linalg };
    const studies: TightnessStudy[] = [];

    const synthetic = async (model: LoadedModel, relu: string | number | undefined, label?: string) => {
      const lin = await Linearizer.create(model, { relu, output: argv.output, threads: argv.threads, onWarning: warn });
      try {
        for (const v of regimes) {
          const bar = argv.quiet ? undefined : progressBar(`${label ?? 'tightness'} var ${v}`, runs);
          try {
            studies.push(await tightnessSynthetic(model, { ...common, maxVariance: v, meanSd, linearizer: lin, onProgress: (k) => bar?.update(k) }));
          } finally {
            bar?.stop();
          }
          if (!argv.quiet) process.stderr.write(summary(studies[studies.length - 1]));
        }
      } finally {
        await lin.release();
      }
    };

    if (argv.paper) {
      for (const net of paperNets()) {
        const model = loadModelBytes(net.bytes, `${net.name}.onnx`);
        await synthetic(model, argv.relu ?? PAPER_RELU, net.name);
      }
    } else if (argv.synthetic) {
      await synthetic(loadModel(argv.model!), argv.relu);
    } else {
      const model = loadModel(argv.model!);
      const inputShape = Linearizer.inputShapeOf(model);
      const n = inputShape.reduce((a, b) => a * b, 1);
      const ds = openInputs(argv.data!, model, inputShape, argv, undefined, warn);
      const start = wholeNumber('start', argv.start, 0);
      if (start >= ds.size)
        throw new NetmomentsError(`--start ${start} is past the last input (the data holds ${ds.size})`, { file: argv.data, code: 'BAD_USAGE' });
      let r = runs;
      if (start + r > ds.size) {
        warn(`--runs ${runs} from input ${start} but ${argv.data} holds ${ds.size} inputs: running ${ds.size - start}`);
        r = ds.size - start;
      }
      const noise = noiseFromArgs(argv, n, warn);
      if (noise.noiseMean)
        throw new NetmomentsError('tightness compares zero-mean noise around each input: --noise-mean is not used here', { code: 'BAD_USAGE' });
      const bar = argv.quiet ? undefined : progressBar('tightness', r);
      try {
        studies.push(
          await tightnessOnData(model, ds, {
            ...common,
            runs: r,
            relu: argv.relu,
            output: argv.output,
            threads: argv.threads,
            onWarning: warn,
            noise: noise.noise!,
            noiseFile: noise.noiseFile,
            window: noise.window,
            layout: noise.layout,
            indices: Array.from({ length: r }, (_, k) => start + k),
            onProgress: (k) => bar?.update(k),
          }),
        );
      } finally {
        bar?.stop();
      }
      if (!argv.quiet) process.stderr.write(summary(studies[0]));
    }

    const files: Record<string, string> = {};
    const plots: Record<string, Record<string, string>> = {};
    for (const s of studies) {
      const f = tightnessPlots(s);
      Object.assign(files, f);
      const names = Object.keys(f);
      plots[s.name] = { mean: names[0], variance: names[1], variancePaper: names[2] };
    }
    const report = {
      schema: 'netmoments.tightness/1',
      run: { version: VERSION, seed: argv.seed, runs, mc, preset: argv.paper ? 'paper' : null },
      studies: studies.map((s) => ({ ...s, plots: plots[s.name] })),
    };
    files['tightness.json'] = toJson(report);
    files['runs.csv'] = runsCsv(studies);
    writeFilesAtomic(argv['out-dir'], files);
    if (!argv.quiet) process.stderr.write(`wrote ${Object.keys(files).length} files to ${argv['out-dir']} (tightness.json, runs.csv, SVG plots)\n`);
  },
};
