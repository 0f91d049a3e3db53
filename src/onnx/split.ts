/**
 * Splitting a model at ReLU K into two standalone ONNX models, R(x) = top(relu(bottom(x))):
 *
 * - bottom: the model's data inputs -> [the tensor ReLU K consumes, ...skip tensors]
 * - top:    [ReLU K's output, ...skip tensors] (original names) -> the model outputs (or chosen tensors)
 *
 * Every node is classified by what it depends on: "above" (depends on ReLU K's output), "constant"
 * (depends on no data input: computed from initializers only), or "below" (everything else). The
 * top part holds the above nodes it needs plus the constant nodes it needs (copied, so shape
 * constants never cross the cut); every other tensor the top reads is produced below the cut (or is
 * a model input) and becomes a skip tensor: an output of bottom and an input of top under its
 * original name. The cut is therefore a real cut: nothing in top reads the model input except
 * through a skip tensor.
 */
import { NetmomentsError } from '../errors.js';
import type { HostTensor } from '../runtime/session.js';
import { Xoshiro128 } from '../util/rng.js';
import type { Graph, GraphNode, ValueInfo } from './graph.js';
import { runWithIntermediates, tensorInfo, zeroFeeds, type RunOptions, type TensorInfo } from './shapes.js';
import { resolveRelu, splitPointOf, type ReluRef, type SplitPoint } from './splitpoint.js';

export interface Partition {
  relu: ReluRef;
  /** Nodes of the bottom part, in graph order. */
  bottom: GraphNode[];
  /** Nodes of the top part, in graph order (ReLU K itself is in neither). */
  top: GraphNode[];
  /** Tensors the top reads from below the cut (model inputs included), in graph order. */
  skip: string[];
  /** The top part's outputs. */
  targets: string[];
}

export interface SplitResult {
  bottom: Graph;
  top: Graph;
  relu: SplitPoint;
  skip: string[];
}

export interface SplitOptions {
  /** Top outputs: a tensor name (a model output or an intermediate above the cut) or several; default the model outputs. */
  output?: string | readonly string[];
  /** Element types and dims of the tensors (shapes.ts tensorInfo); used for the new inputs/outputs. */
  info?: ReadonlyMap<string, TensorInfo>;
  file?: string;
}

function targetsOf(graph: Graph, output: SplitOptions['output'], file?: string): string[] {
  if (output === undefined) return graph.outputs.map((o) => o.name);
  const names = typeof output === 'string' ? [output] : [...output];
  if (names.length === 0) throw new NetmomentsError('no output tensor named for the top part', { file, code: 'BAD_USAGE' });
  const known = new Set<string>([...graph.inputs.map((i) => i.name), ...graph.producedTensors()]);
  for (const name of names) {
    if (!known.has(name)) {
      const outs = graph.outputs.map((o) => `'${o.name}'`).join(', ');
      throw new NetmomentsError(`the model has no tensor named '${name}' (its outputs are ${outs})`, { file, code: 'BAD_USAGE' });
    }
  }
  return names;
}

/** Which nodes go below and above ReLU `relu`, and which tensors cross the cut besides its output. */
export function partition(graph: Graph, relu: ReluRef, options: Pick<SplitOptions, 'output' | 'file'> = {}): Partition {
  const file = options.file;
  const y = relu.node.outputs[0];
  const v = relu.node.inputs[0];
  // Tensors a subgraph body reads from the outer scope count as inputs too.
  const reads = (n: GraphNode): string[] => [...n.inputs, ...outerScopeReads(n)];
  const isRelu = (n: GraphNode): boolean => n === relu.node;
  const nodeAbove = new Set(graph.walk([y], 'down', { stop: isRelu, reads }).nodes);
  const fromData = new Set(
    graph.walk(
      graph.dataInputs.map((i) => i.name),
      'down',
      { stop: isRelu, reads },
    ).nodes,
  );
  // Constant nodes depend on no data input (computed from initializers only).
  const nodeConst = new Set(graph.nodes.filter((n) => n !== relu.node && !fromData.has(n) && !nodeAbove.has(n)));
  const targets = targetsOf(graph, options.output, file);

  // Top: backward from the targets through above and constant nodes.
  const { nodes: top, tensors: needed } = graph.walk(targets, 'up', { stop: (n) => n === relu.node || (!nodeAbove.has(n) && !nodeConst.has(n)), reads });
  const crossing = new Set<string>();
  const topProduced = new Set<string>();
  for (const n of top) for (const o of n.outputs) if (o) topProduced.add(o);
  for (const t of needed) {
    if (t === y || topProduced.has(t) || graph.initializers.has(t)) continue;
    crossing.add(t);
  }
  // Order skip tensors: model inputs first, then by their producer's position.
  const order = new Map<string, number>();
  graph.dataInputs.forEach((inp, i) => order.set(inp.name, i - graph.dataInputs.length));
  for (const t of graph.producedTensors()) order.set(t, graph.positionOf(graph.producerOf(t)!));
  const skip = [...crossing].sort((a, b) => (order.get(a) ?? 0) - (order.get(b) ?? 0));
  for (const s of skip) {
    if (!order.has(s)) throw new NetmomentsError(`the top part reads '${s}', which nothing produces`, { file });
  }

  // Bottom: backward from [v, ...skip] through every node (none of them depends on y).
  const bottom = graph.walk([v, ...skip], 'up', { stop: isRelu, reads }).nodes;
  const both = [...bottom].reverse().find((n) => nodeAbove.has(n));
  if (both) throw new NetmomentsError(`node '${both.name}' is both above and below ReLU ${relu.index} (internal)`, { file });
  return { relu, bottom, top, skip, targets };
}

/** Names a node's subgraph bodies read from the enclosing scope (inputs of body nodes no body node defines). */
function outerScopeReads(n: GraphNode): string[] {
  const out: string[] = [];
  for (const a of n.attributes) {
    for (const g of [...(a.g ? [a.g] : []), ...(a.graphs ?? [])]) {
      const local = new Set<string>([...(g.input ?? []).map((i) => i.name ?? ''), ...(g.initializer ?? []).map((t) => t.name ?? '')]);
      for (const bn of g.node ?? []) for (const o of bn.output ?? []) local.add(o);
      for (const bn of g.node ?? []) for (const x of bn.input ?? []) if (x && !local.has(x)) out.push(x);
    }
  }
  return out;
}

function valueInfoFor(graph: Graph, name: string, info: ReadonlyMap<string, TensorInfo> | undefined, file?: string): ValueInfo {
  const t = info?.get(name);
  if (t) return { name, elemType: t.elemType, shape: [...t.dims] };
  const declared = graph.inputs.find((i) => i.name === name) ?? graph.outputs.find((o) => o.name === name) ?? graph.valueInfo.get(name);
  if (declared && declared.elemType) return { ...declared, shape: declared.shape ? [...declared.shape] : undefined };
  throw new NetmomentsError(`the element type of tensor '${name}' is unknown; pass tensor info (shapes.ts tensorInfo) to splitModel`, { file });
}

function part(graph: Graph, nodes: GraphNode[], inputs: ValueInfo[], outputs: ValueInfo[], role: 'bottom' | 'top', relu: SplitPoint): Graph {
  const g = graph.clone();
  g.name = `${graph.name}_${role}`;
  g.nodes = nodes.map((n) => ({ ...n, inputs: [...n.inputs], outputs: [...n.outputs], attributes: [...n.attributes] }));
  const used = new Set<string>();
  for (const n of g.nodes) for (const x of [...n.inputs, ...outerScopeReads(n)]) if (x) used.add(x);
  for (const o of outputs) used.add(o.name);
  g.initializers = new Map([...graph.initializers].filter(([name]) => used.has(name)));
  const inputNames = new Set(inputs.map((i) => i.name));
  // Initializers listed as graph inputs (ONNX IR < 4) stay listed when used.
  const initInputs = graph.inputs.filter((i) => graph.initializers.has(i.name) && g.initializers.has(i.name) && !inputNames.has(i.name));
  g.inputs = [...inputs, ...initInputs];
  g.outputs = outputs;
  const produced = new Set(g.producedTensors());
  const io = new Set([...g.inputs.map((i) => i.name), ...g.outputs.map((o) => o.name)]);
  g.valueInfo = new Map([...graph.valueInfo].filter(([name]) => produced.has(name) && !io.has(name)));
  g.metadata = { ...graph.metadata, 'netmoments.split.part': role, 'netmoments.split.relu': JSON.stringify(relu) };
  return g;
}

/**
 * Split `graph` at the ReLU of split point `relu`. Both parts are standalone models: unused
 * initializers pruned, inputs and outputs typed and shaped (from options.info), opset, IR version,
 * metadata and model-local functions kept.
 */
export function splitModel(graph: Graph, relu: SplitPoint, options: SplitOptions = {}): SplitResult {
  const file = options.file;
  const ref = resolveRelu(graph, relu.index, file);
  if (ref.node.name !== relu.node || ref.node.outputs[0] !== relu.output) {
    throw new NetmomentsError(`split point ${relu.index} ('${relu.node}') does not match this model's ReLU ${relu.index} ('${ref.node.name}')`, {
      file,
    });
  }
  const p = partition(graph, ref, options);
  const vi = (name: string): ValueInfo => valueInfoFor(graph, name, options.info, file);
  const bottomOutputs = [relu.input, ...p.skip.filter((s) => s !== relu.input)];
  const bottomReads = new Set<string>(bottomOutputs);
  for (const n of p.bottom) for (const x of [...n.inputs, ...outerScopeReads(n)]) if (x) bottomReads.add(x);
  let bottomInputs = graph.dataInputs.filter((i) => bottomReads.has(i.name));
  if (bottomInputs.length === 0) bottomInputs = graph.dataInputs;
  const bottom = part(
    graph,
    p.bottom,
    bottomInputs.map((i) => vi(i.name)),
    bottomOutputs.map(vi),
    'bottom',
    relu,
  );
  const top = part(graph, p.top, [relu.output, ...p.skip].map(vi), p.targets.map(vi), 'top', relu);
  return { bottom, top, relu, skip: p.skip };
}

/** Resolve ReLU `k`, compute tensor info (one or two runs at zeros), and split. */
export async function splitModelAt(
  graph: Graph,
  k: number | string,
  options: Omit<SplitOptions, 'info'> & RunOptions = {},
): Promise<SplitResult & { info: Map<string, TensorInfo> }> {
  const ref = resolveRelu(graph, k, options.file);
  const info = await tensorInfo(graph, options);
  const relu = splitPointOf(ref, info, options.file);
  return { ...splitModel(graph, relu, { ...options, info }), info };
}

/**
 * Run top(relu(bottom(x))) next to the original model on the same feeds and return the largest
 * absolute difference per output, with the largest magnitude of the original output.
 */
export async function compareSplit(
  graph: Graph,
  split: SplitResult,
  feeds: Record<string, HostTensor>,
  options: RunOptions & { output?: SplitOptions['output'] } = {},
): Promise<{ name: string; maxAbsDiff: number; maxAbs: number }[]> {
  const targets = split.top.outputs.map((o) => o.name);
  const original = await runWithIntermediates(graph, feeds, targets, options);
  const bottomFeeds: Record<string, HostTensor> = {};
  for (const i of split.bottom.inputs) if (i.name in feeds) bottomFeeds[i.name] = feeds[i.name];
  const below = await runWithIntermediates(split.bottom, bottomFeeds, [], options);
  const v = below[split.relu.input];
  const relu = (t: number): number => (t > 0 ? t : 0);
  const y = v.data instanceof Float64Array ? Float64Array.from(v.data, relu) : Float32Array.from(v.data as Float32Array, relu);
  const topFeeds: Record<string, HostTensor> = { [split.relu.output]: { type: v.type, data: y, dims: v.dims } };
  for (const s of split.skip) topFeeds[s] = below[s];
  const above = await runWithIntermediates(split.top, topFeeds, [], options);
  return targets.map((name) => {
    const a = original[name].data as ArrayLike<number>;
    const b = above[name].data as ArrayLike<number>;
    if (a.length !== b.length) return { name, maxAbsDiff: Number.POSITIVE_INFINITY, maxAbs: 0 };
    let d = 0;
    let m = 0;
    for (let i = 0; i < a.length; i++) {
      const x = Number(a[i]);
      const z = Number(b[i]);
      if (Object.is(x, z) || x === z || (Number.isNaN(x) && Number.isNaN(z))) continue; // Inf == Inf, NaN ~ NaN
      d = Math.max(d, Number.isFinite(x) && Number.isFinite(z) ? Math.abs(x - z) : Number.POSITIVE_INFINITY);
      if (Number.isFinite(x)) m = Math.max(m, Math.abs(x));
    }
    return { name, maxAbsDiff: d, maxAbs: m };
  });
}

/**
 * Feeds for checking a split (compareSplit): standard normal values (seeded, Box-Muller) in every
 * float input, zeros in the others, for `batch` samples.
 */
export function randomFeeds(graph: Graph, batch: number, seed = 1): Record<string, HostTensor> {
  const feeds = zeroFeeds(graph, batch);
  const rng = new Xoshiro128(seed);
  for (const f of Object.values(feeds)) {
    if (f.data instanceof Float32Array || f.data instanceof Float64Array) for (let i = 0; i < f.data.length; i++) f.data[i] = rng.boxMullerNormal();
  }
  return feeds;
}
