/**
 * The files of a split (`netmoments split`): bottom.onnx, top.onnx and split.json (schema
 * netmoments.split/1), made only after top(relu(bottom(x))) has been checked against the model on
 * one random input.
 */
import { makeBatchDynamicProbed } from './batch.js';
import { loadModel } from './load.js';
import { hasDynamicBatch } from './shapes.js';
import { compareSplit, randomFeeds, splitModelAt, type SplitResult } from './split.js';

export interface SplitManifest {
  schema: 'netmoments.split/1';
  relu: SplitResult['relu'];
  skip: string[];
  /** The top part's outputs. */
  outputs: string[];
  /** The model that was split. */
  source: { file: string; sha256: string };
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
