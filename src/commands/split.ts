/**
 * `netmoments split MODEL --relu K --out-dir DIR [--output NAME] [--dynamic-batch]`: writes
 * bottom.onnx, top.onnx and split.json (schema netmoments.split/1) all-or-nothing. Before writing,
 * top(relu(bottom(x))) is checked against the model on one random input.
 */
import { existsSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import type { CommandModule } from 'yargs';
import { NetmomentsError } from '../errors.js';
import { makeBatchDynamicProbed } from '../onnx/batch.js';
import type { Graph } from '../onnx/graph.js';
import { loadModel } from '../onnx/load.js';
import { hasDynamicBatch, zeroFeeds } from '../onnx/shapes.js';
import { compareSplit, splitModelAt, type SplitResult } from '../onnx/split.js';
import { writeFilesAtomic } from '../util/files.js';
import type { HostTensor } from '../runtime/session.js';

export interface SplitManifest {
  schema: 'netmoments.split/1';
  relu: SplitResult['relu'];
  skip: string[];
  /** The top part's outputs. */
  outputs: string[];
  /** The model that was split. */
  source: { file: string; sha256: string };
}

/** Deterministic pseudo-random normal feeds (float inputs), zeros elsewhere. */
export function randomFeeds(graph: Graph, batch: number, seed = 1): Record<string, HostTensor> {
  const feeds = zeroFeeds(graph, batch);
  let s = seed >>> 0 || 1;
  const uniform = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  for (const f of Object.values(feeds)) {
    if (f.data instanceof Float32Array || f.data instanceof Float64Array) {
      for (let i = 0; i < f.data.length; i++) f.data[i] = Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
    }
  }
  return feeds;
}

/** Split, check the round trip on a random input, and return the files to write. */
export async function splitFiles(
  file: string,
  relu: string | number,
  options: { output?: string; dynamicBatch?: boolean } = {},
): Promise<{ files: Record<string, string | Uint8Array>; manifest: SplitManifest }> {
  const model = loadModel(file);
  // A model that declares a dynamic batch gets the rewrite analyze applies too (a Reshape to a
  // constant [1, -1] would otherwise stop the run at batch 2, and the parts would declare a batch
  // they refuse); a fixed batch-1 model gets it with --dynamic-batch.
  const dynamic = options.dynamicBatch || model.graph.dataInputs.some(hasDynamicBatch);
  const graph = dynamic ? await makeBatchDynamicProbed(model.graph, { file }) : model.graph;
  const split = await splitModelAt(graph, relu, { output: options.output, file });
  const diffs = await compareSplit(graph, split, randomFeeds(graph, 1), { file });
  for (const d of diffs) {
    if (!(d.maxAbsDiff <= 1e-4 * Math.max(1, d.maxAbs))) {
      throw new Error(`split check failed: output '${d.name}' of top(relu(bottom(x))) differs from the model by ${d.maxAbsDiff}`);
    }
  }
  const manifest: SplitManifest = {
    schema: 'netmoments.split/1',
    relu: split.relu,
    skip: split.skip,
    outputs: split.top.outputs.map((o) => o.name),
    source: { file, sha256: model.sha256 },
  };
  return {
    files: {
      'bottom.onnx': split.bottom.toBytes(),
      'top.onnx': split.top.toBytes(),
      'split.json': `${JSON.stringify(manifest, null, 2)}\n`,
    },
    manifest,
  };
}

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
      .option('dynamic-batch', { type: 'boolean', describe: 'Make the batch dimension dynamic first (for models exported with batch 1)' }) as never,
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
