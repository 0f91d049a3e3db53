/**
 * `netmoments linearize MODEL --input X --relu K --out-dir DIR`: the two-stage surrogate
 * g(x) ~ B relu(A x + c1) + D x + c2 at one point, as .npy files (float64) with a JSON index:
 * A [p, n], c1 [p], B [d, p], c2 [d], D [d, n] (only when tensors skip the cut), in the layout
 * rule's flattening.
 */
import type { CommandModule } from 'yargs';
import { NetmomentsError } from '../errors.js';
import { Linearizer } from '../linearize/linearizer.js';
import { encodeNpy } from '../data/npy.js';
import { writeFilesAtomic } from '../util/files.js';
import { VERSION } from '../analyze.js';
import { checkRunArgs, loadModelInput, modelRunOptions, openInputs, sessionOptions, stderrWriter, type ModelRunArgs } from './common.js';
import { checkMemory, estimateAnalyzeMemory, linearizerSizes, memoryLimit } from '../resources.js';

interface LinearizeArgs extends ModelRunArgs {
  model: string;
  input?: string;
  index: number;
  'out-dir': string;
  quiet?: boolean;
}

export const linearizeCommand: CommandModule<object, LinearizeArgs> = {
  command: 'linearize <model>',
  describe: 'Write the two-stage linearization A, c1, B, c2 (and D) at a point as .npy files',
  builder: (y) =>
    modelRunOptions(y)
      .positional('model', { type: 'string', demandOption: true, describe: 'ONNX model file' })
      .option('input', { type: 'string', describe: 'The linearization point: .npy (model units), .png or idx (default: the zero input)' })
      .option('index', { type: 'number', default: 0, describe: 'Which input of a batch file to use' })
      .option('out-dir', { type: 'string', demandOption: true, describe: 'Folder for A.npy, c1.npy, B.npy, c2.npy, [D.npy] and linearization.json' })
      .example('$0 linearize fixtures/lenet.onnx --input fixtures/mnist/digit-0.npy --relu 2 --out-dir lin/', '') as never,
  handler: async (argv) => {
    const warn = stderrWriter(argv.quiet);
    checkRunArgs(argv);
    const { model, inputShape: shape, n } = loadModelInput(argv.model, warn, argv);
    let x: Float32Array = new Float32Array(n);
    if (argv.input) {
      const ds = openInputs(argv.input, model, shape, argv, undefined, warn);
      if (!Number.isInteger(argv.index) || argv.index < 0 || argv.index >= ds.size) {
        throw new NetmomentsError(`--index ${argv.index} is out of range: the file holds ${ds.size} input(s)`, { file: argv.input, code: 'BAD_USAGE' });
      }
      x = ds.get(argv.index);
    } else warn('no --input: linearizing at the zero input');
    // the surrogate pushes n identity directions: the noise-direction terms of the estimate with r = n
    const limit = memoryLimit(argv['max-memory']);
    checkMemory(estimateAnalyzeMemory({ n, r: n, modelBytes: model.bytes.length, probabilityPoints: 0 }), limit, argv.model);
    const lin = await Linearizer.create(model, { ...sessionOptions(argv, warn), flips: false });
    try {
      checkMemory(estimateAnalyzeMemory({ ...linearizerSizes(lin), r: n, modelBytes: model.bytes.length, probabilityPoints: 0 }), limit, argv.model);
      const s = await lin.surrogate(x);
      // the ReLU surrogate's units: p for a Relu split, more for LeakyRelu, PRelu and Clip (linearize/pieces.ts)
      const p = lin.units;
      const d = lin.d;
      const files: Record<string, Uint8Array | string> = {
        'A.npy': encodeNpy(s.A, [p, n]),
        'c1.npy': encodeNpy(s.c1, [p]),
        'B.npy': encodeNpy(s.B, [d, p]),
        'c2.npy': encodeNpy(s.c2, [d]),
        'point.npy': encodeNpy(x, shape),
      };
      if (s.D) files['D.npy'] = encodeNpy(s.D, [d, n]);
      const index = {
        schema: 'netmoments.linearize/1',
        model: argv.model,
        run: { version: VERSION, modelSha256: model.sha256 },
        split: lin.split,
        skip: lin.skip,
        input: { name: lin.input.name, shape: lin.input.shape, size: n, file: argv.input ?? null, index: argv.index },
        output: { name: lin.output.name, shape: lin.output.shape, size: d },
        jacobian: lin.jacobianMode,
        surrogate: 'g(x) = B relu(A x + c1) + D x + c2',
        files: {
          A: { file: 'A.npy', shape: [p, n] },
          c1: { file: 'c1.npy', shape: [p] },
          B: { file: 'B.npy', shape: [d, p] },
          c2: { file: 'c2.npy', shape: [d] },
          D: s.D ? { file: 'D.npy', shape: [d, n] } : null,
          point: { file: 'point.npy', shape },
        },
      };
      files['linearization.json'] = `${JSON.stringify(index, null, 2)}\n`;
      writeFilesAtomic(argv['out-dir'], files);
      if (!argv.quiet) process.stderr.write(`netmoments: wrote A [${p}, ${n}], c1, B [${d}, ${p}], c2${s.D ? `, D [${d}, ${n}]` : ''} to ${argv['out-dir']}\n`);
    } finally {
      await lin.release();
    }
  },
};
