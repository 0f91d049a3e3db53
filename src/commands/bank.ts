/**
 * `netmoments bank MODEL --data D --k K --out-dir BANK [--relu R]`: cluster the data with k-means,
 * linearize the model at each centre and save the bank (float32 .npy per centre and manifest.json,
 * schema netmoments.bank/1; src/linearize/bank.ts). Reports then use it with --linearize bank:BANK,
 * every shard the same one. The bank's size is estimated first and a K that does not fit is refused.
 */
import type { CommandModule } from 'yargs';
import { VERSION } from '../analyze.js';
import { NetmomentsError } from '../errors.js';
import { checkBankFits, writeBank, type BankPoint } from '../linearize/bank.js';
import { Linearizer } from '../linearize/linearizer.js';
import { formatBytes, parseMemorySize } from '../resources.js';
import { checkRunArgs, loadModelInput, modelRunOptions, openInputs, sessionOptions, stderrWriter, withProgress, type ModelRunArgs } from './common.js';
import { interruptedLine } from './run.js';

interface BankArgs extends ModelRunArgs {
  model: string;
  data: string;
  k: number;
  seed: number;
  'max-iterations': number;
  point: BankPoint;
  'out-dir': string;
  'max-size'?: string;
  quiet?: boolean;
}

export const bankCommand: CommandModule<object, BankArgs> = {
  command: 'bank <model>',
  describe: 'Build a k-means linearization bank: linearize once at each of K centres of the data (reports: --linearize bank:DIR)',
  builder: (y) =>
    modelRunOptions(y)
      .positional('model', { type: 'string', demandOption: true, describe: 'ONNX model file' })
      .option('data', {
        type: 'string',
        demandOption: true,
        describe: 'Inputs to cluster: .npy batch (model units), MNIST idx, a folder of PNG/JPEG images or of class folders',
      })
      .option('k', { type: 'number', demandOption: true, describe: 'Number of k-means centres' })
      .option('seed', { type: 'number', default: 0, describe: 'Seed of the k-means++ initialization' })
      .option('max-iterations', { type: 'number', default: 100, describe: 'k-means iterations at most' })
      .option('point', {
        choices: ['centroid', 'farthest'] as const,
        default: 'centroid' as const,
        describe: "Where each centre is linearized: its centroid, or its member farthest from the centroid (the paper's Table 3 baseline)",
      })
      .option('out-dir', { type: 'string', demandOption: true, describe: 'Folder for manifest.json, centres.npy and centre-NNNN/*.npy' })
      .option('max-size', { type: 'string', describe: 'Refuse a bank larger than this (512M, 4G; default: the free disk space)' })
      .example('$0 bank fixtures/lenet.onnx --data fixtures/mnist/digits-10.npy --relu 2 --k 3 --out-dir lenet-bank/', '') as never,
  handler: async (argv) => {
    const warn = stderrWriter(argv.quiet);
    checkRunArgs(argv);
    if (!(Number.isInteger(argv.k) && argv.k >= 1)) throw new NetmomentsError(`--k must be a whole number >= 1, got ${argv.k}`, { code: 'BAD_USAGE' });
    if (!(Number.isInteger(argv['max-iterations']) && argv['max-iterations'] >= 1)) {
      throw new NetmomentsError(`--max-iterations must be a whole number >= 1, got ${argv['max-iterations']}`, { code: 'BAD_USAGE' });
    }
    const maxBytes = argv['max-size'] !== undefined ? parseMemorySize(argv['max-size'], '--max-size') : undefined;
    const { model, inputShape, n } = loadModelInput(argv.model, warn, argv);
    const ds = openInputs(argv.data, model, inputShape, argv, undefined, warn);
    if (ds.size === 0) throw new NetmomentsError('holds no inputs', { file: argv.data });
    if (argv.k > ds.size)
      throw new NetmomentsError(`--k ${argv.k} needs at least ${argv.k} inputs to cluster, the data holds ${ds.size}`, { file: argv.data, code: 'BAD_USAGE' });
    const data = ds.getBatch(Array.from({ length: ds.size }, (_, i) => i));
    for (let i = 0; i < data.length; i++) {
      if (!Number.isFinite(data[i])) throw new NetmomentsError(`input ${Math.floor(i / n)} holds a non-finite value at element ${i % n}`, { file: argv.data });
    }
    const lin = await Linearizer.create(model, { ...sessionOptions(argv, warn), flips: false });
    let stopBar: (() => void) | undefined;
    const onSigint = () => {
      stopBar?.();
      process.stderr.write(interruptedLine(`${argv['out-dir']} is unchanged (a bank is complete only once its manifest.json is written)`, false));
      process.exit(130);
    };
    process.once('SIGINT', onSigint);
    try {
      const est = checkBankFits({ n, p: lin.p, d: lin.d, skip: lin.skip.length > 0 }, argv.k, argv['out-dir'], maxBytes);
      warn(`bank of ${est.text}; clustering ${ds.size} inputs`);
      const t0 = performance.now();
      const res = await withProgress(argv.quiet, 'bank: linearizing at centres', argv.k, (update, stop) => {
        stopBar = stop;
        return writeBank(lin, data, ds.size, argv['out-dir'], {
          k: argv.k,
          seed: argv.seed,
          maxIterations: argv['max-iterations'],
          point: argv.point,
          dataFile: argv.data,
          version: VERSION,
          maxBytes,
          onProgress: (stage, done) => {
            if (stage === 'centre') update(done);
          },
        });
      });
      const m = res.manifest;
      warn(
        `wrote a bank of ${m.k} centres (${formatBytes(res.bytes)}) at ReLU ${m.split.index} ('${m.split.node}', p = ${m.split.width}) to ${argv['out-dir']} ` +
          `in ${((performance.now() - t0) / 1000).toFixed(1)} s; k-means ${m.kmeans.converged ? 'converged' : 'stopped'} after ${m.kmeans.iterations} iteration(s), mean squared distance to the centroid ${m.kmeans.inertia.toPrecision(4)}`,
      );
    } finally {
      process.removeListener('SIGINT', onSigint);
      await lin.release();
    }
  },
};
