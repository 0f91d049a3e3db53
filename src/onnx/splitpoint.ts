/**
 * The split point: the one object used everywhere a split is named (inspect's relus[], split.json's
 * relu, analyze's split). Relu nodes are counted 0-based in the order they appear in the graph
 * (ONNX requires that order to be topological; the loader sorts a file that is not).
 *
 *   { "index": 1, "node": "relu2", "input": "conv2_out", "output": "relu2_out",
 *     "shape": [50, 8, 8], "width": 3200 }
 *
 * shape is the ReLU output's shape without the batch axis; width is its product (the p of the paper).
 */
import { NetmomentsError } from '../errors.js';
import type { Dim, Graph, GraphNode } from './graph.js';
import { isKinked } from './ops/registry.js';
import { tensorInfo, type RunOptions, type TensorInfo } from './shapes.js';
import { subgraphFacts } from './validate.js';

export interface SplitPoint {
  index: number;
  /** The Relu node's name. */
  node: string;
  /** The tensor the Relu consumes (the bottom part's output). */
  input: string;
  /** The tensor the Relu produces (the top part's input). */
  output: string;
  /** The ReLU output's shape without the batch axis. */
  shape: number[];
  /** Product of shape: the split width p. */
  width: number;
}

/** A Relu node picked by index or name, before shapes are known. */
export interface ReluRef {
  index: number;
  node: GraphNode;
}

function listRelus(relus: GraphNode[]): string {
  const shown = relus.slice(0, 12).map((n, i) => `${i}: '${n.name}' (tensor '${n.outputs[0]}')`);
  if (relus.length > 12) shown.push(`... ${relus.length - 12} more`);
  return shown.join(', ');
}

/** The error for a model with no Relu that can be split at. */
export function noReluError(graph: Graph, file?: string): NetmomentsError {
  const facts = subgraphFacts(graph);
  if (facts.nestedRelus.length > 0) {
    const holders = [...new Set(facts.nestedRelus.map((r) => r.holder))].map((h) => `'${h}'`).join(', ');
    return new NetmomentsError(
      `the model's only Relu nodes are inside control-flow subgraphs (of node ${holders}), which cannot be split; netmoments needs a top-level Relu`,
      { file, code: 'UNSUPPORTED' },
    );
  }
  const kinked = graph.nodes.filter((n) => isKinked(n.opType, n.domain));
  const shown = kinked.slice(0, 4).map((n) => `${n.opType} '${n.name}'`);
  if (kinked.length > 4) shown.push(`${kinked.length - 4} more`);
  const has = kinked.length > 0 ? `its kinked ops are ${shown.join(', ')}` : 'it has no kinked op (it is smooth or linear)';
  return new NetmomentsError(
    `the model has no Relu node to split at; netmoments needs a piecewise-linear network with at least one ReLU to linearize at; ${has}: ` +
      'run with --method propagate (moments through every layer) instead',
    { file },
  );
}

/**
 * Find ReLU `k`: a number or a string of digits is the 0-based index; any other string is a Relu
 * node name or the name of a Relu's output tensor.
 */
export function resolveRelu(graph: Graph, k: number | string, file?: string): ReluRef {
  const relus = graph.relus();
  if (relus.length === 0) throw noReluError(graph, file);
  const range = relus.length === 1 ? 'the model has 1 ReLU (index 0)' : `the model has ${relus.length} ReLUs (0..${relus.length - 1})`;
  let index: number | undefined;
  if (typeof k === 'number') {
    if (!Number.isInteger(k)) throw new NetmomentsError(`ReLU index ${k} is not an integer; ${range}`, { file, code: 'BAD_USAGE' });
    index = k;
  } else {
    const s = k.trim();
    if (/^-?\d+$/.test(s)) index = Number(s);
    else {
      const byNode = relus.map((n, i) => ({ n, i })).filter(({ n }) => n.name === s);
      if (byNode.length > 1) {
        throw new NetmomentsError(`ReLU name '${s}' is ambiguous: nodes ${byNode.map((b) => b.i).join(', ')} carry it; use the index`, {
          file,
          code: 'BAD_USAGE',
        });
      }
      const hit = byNode[0] ?? relus.map((n, i) => ({ n, i })).find(({ n }) => n.outputs[0] === s);
      if (!hit) {
        throw new NetmomentsError(`no ReLU named '${s}' (node or output tensor); ${range}: ${listRelus(relus)}`, { file, code: 'BAD_USAGE' });
      }
      return { index: hit.i, node: hit.n };
    }
  }
  if (index < 0 || index >= relus.length) {
    throw new NetmomentsError(`ReLU ${index} is out of range: ${range}: ${listRelus(relus)}`, { file, code: 'BAD_USAGE' });
  }
  return { index, node: relus[index] };
}

/** The split point of a resolved ReLU, given the tensor shapes (from shapes.ts tensorInfo). */
export function splitPointOf(ref: ReluRef, info: ReadonlyMap<string, TensorInfo | { dims: Dim[] }>, file?: string): SplitPoint {
  const output = ref.node.outputs[0];
  const t = info.get(output);
  if (!t) throw new NetmomentsError(`the shape of ReLU ${ref.index}'s output '${output}' is unknown`, { file });
  const rest = t.dims.slice(1);
  const shape = rest.map((d) => {
    if (typeof d !== 'number') {
      throw new NetmomentsError(`ReLU ${ref.index}'s output '${output}' has a dynamic dimension besides the batch axis`, { file, code: 'UNSUPPORTED' });
    }
    return d;
  });
  return {
    index: ref.index,
    node: ref.node.name,
    input: ref.node.inputs[0],
    output,
    shape,
    width: shape.reduce((a, b) => a * b, 1),
  };
}

/** Every split point of the graph (no ReLU: an empty list). */
export function splitPointsFromInfo(graph: Graph, info: ReadonlyMap<string, TensorInfo | { dims: Dim[] }>, file?: string): SplitPoint[] {
  return graph.relus().map((node, index) => splitPointOf({ index, node }, info, file));
}

/** Every split point, running the model once at zeros for the shapes. */
export async function splitPoints(graph: Graph, options: RunOptions = {}): Promise<SplitPoint[]> {
  if (graph.relus().length === 0) return [];
  return splitPointsFromInfo(graph, await tensorInfo(graph, options), options.file);
}

/** Resolve ReLU `k` to its split point (one model run at zeros for the shape). */
export async function resolveSplitPoint(graph: Graph, k: number | string, options: RunOptions = {}): Promise<SplitPoint> {
  const ref = resolveRelu(graph, k, options.file);
  return splitPointOf(ref, await tensorInfo(graph, options), options.file);
}
