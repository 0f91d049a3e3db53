/**
 * `netmoments split MODEL --relu K --out-dir DIR [--output NAME] [--dynamic-batch]`: writes
 * bottom.onnx, top.onnx and split.json (schema netmoments.split/1) all-or-nothing. Before writing,
 * top(relu(bottom(x))) is checked against the model on one random input.
 */
import { existsSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import type { CommandModule } from 'yargs';
import { NetmomentsError } from '../errors.js';
import { splitFiles } from '../onnx/splitFiles.js';
import { writeFilesAtomic } from '../util/files.js';

interface SplitArgs {
  model: string;
  relu: string;
  'out-dir': string;
  output?: string;
  'dynamic-batch'?: boolean;
  quiet?: boolean;
}

export const splitCommand: CommandModule<object, SplitArgs> = {
  command: 'split <model>',
  describe: 'Cut a model at a ReLU into bottom.onnx and top.onnx (plus split.json)',
  builder: (y) =>
    y
      .positional('model', { type: 'string', demandOption: true, describe: 'ONNX model file' })
      .option('relu', { type: 'string', demandOption: true, describe: 'ReLU index (see inspect), node name or output tensor name' })
      .option('out-dir', { type: 'string', demandOption: true, describe: 'Folder for bottom.onnx, top.onnx and split.json' })
      .option('output', { type: 'string', describe: 'Top output: a model output or an intermediate tensor above the cut (default: the model outputs)' })
      .option('dynamic-batch', { type: 'boolean', describe: 'Make the batch dimension dynamic first (for models exported with batch 1)' })
      .example('$0 split fixtures/lenet.onnx --relu 1 --out-dir parts/', 'bottom.onnx, top.onnx and split.json at the second ReLU')
      .example('$0 split fixtures/lenet-batch1.onnx --relu 2 --dynamic-batch --out-dir parts-batch1/', 'a model exported with batch 1') as never,
  handler: async (argv) => {
    const outDir = argv['out-dir'];
    const { files, manifest } = await splitFiles(argv.model, argv.relu, { output: argv.output, dynamicBatch: argv['dynamic-batch'] });
    const existed = existsSync(outDir);
    try {
      writeFilesAtomic(outDir, files);
    } catch (e) {
      if (!existed) {
        try {
          rmdirSync(outDir);
        } catch {
          /* not empty or gone: leave it */
        }
      }
      throw new NetmomentsError(`cannot write the split: ${(e as Error).message}`, { file: outDir });
    }
    {
      const r = manifest.relu;
      process.stdout.write(
        `split ${argv.model} at ReLU ${r.index} ('${r.node}', width ${r.width}, shape [${r.shape.join(', ')}])\n` +
          `  ${join(outDir, 'bottom.onnx')}: inputs -> ${[r.input, ...manifest.skip.filter((s) => s !== r.input)].join(', ')}\n` +
          `  ${join(outDir, 'top.onnx')}: ${[r.output, ...manifest.skip].join(', ')} -> ${manifest.outputs.join(', ')}\n` +
          `  ${join(outDir, 'split.json')}\n`,
      );
    }
  },
};
