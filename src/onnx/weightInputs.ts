/**
 * Large float weights handed to onnxruntime as graph inputs, fed at every run from the arrays the
 * loaded model already holds, instead of as initializers. An initializer is serialized into the
 * model's bytes, parsed and copied by onnxruntime when the session is made, and (Gemm, MatMul)
 * pre-packed: AlexNet's fc6 (9216 x 4096, 151 MB) cost 0.26-1.2 CPU s and 161-345 MB per session
 * that way. Fed as an input it costs nothing to make and nothing to hold (onnxruntime reads the
 * array in place), and a batched Gemm runs as fast: MLAS packs the weights within the run.
 * Conv weights are better left as initializers where a session runs at width (onnxruntime reorders
 * them once for its blocked NCHWc kernels); a session run once can take them as inputs too.
 */
import type { Graph } from './graph.js';
import { DataType } from './proto.js';
import type { HostTensor } from '../runtime/session.js';

/**
 * Float initializers of at least this many elements (16 MiB) are moved. Smaller ones cost little to
 * make a session with, and a session run many times gains from having them pre-packed: with LeNet's
 * fc1 (800 x 500) fed, `bench/propagate.mjs 20 2000 8 50` gave propagate 0.275-0.293 CPU s per
 * digit, with it an initializer 0.205-0.269. AlexNet's fc6 and fc7 and VGG-11's fc6 and fc7 are
 * fed; AlexNet's fc8 (4096 x 1000) is not.
 */
export const FED_WEIGHT_ELEMENTS = 2 ** 22;

/**
 * Move the graph's large float initializers (FED_WEIGHT_ELEMENTS or more) to graph inputs, in
 * place, except those some node of an op in `except` reads; returns their feeds (the arrays
 * themselves, not copies). An initializer that is also a graph output stays.
 */
export function moveWeightsToInputs(graph: Graph, except: ReadonlySet<string> = new Set()): Record<string, HostTensor> {
  const kept = new Set<string>();
  for (const n of graph.nodes) if (except.has(n.opType)) for (const x of n.inputs) kept.add(x);
  for (const o of graph.outputs) kept.add(o.name);
  const feeds: Record<string, HostTensor> = {};
  for (const [name, t] of [...graph.initializers]) {
    if (t.dataType !== DataType.FLOAT || !(t.data instanceof Float32Array) || t.data.length < FED_WEIGHT_ELEMENTS || kept.has(name)) continue;
    graph.initializers.delete(name);
    const listed = graph.inputs.find((i) => i.name === name); // IR 3 lists initializers as inputs too
    if (listed) Object.assign(listed, { elemType: DataType.FLOAT, shape: [...t.dims] });
    else graph.inputs.push({ name, elemType: DataType.FLOAT, shape: [...t.dims] });
    feeds[name] = { type: 'float32', data: t.data, dims: [...t.dims] };
  }
  return feeds;
}
