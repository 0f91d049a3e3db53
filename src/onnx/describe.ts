/**
 * What a model is and where it can be split, as data (the `inspect` command prints it). Schema
 * netmoments.inspect/1 (docs/ONNX.md):
 *   {"schema", "file", "inputs": [{name, type, shape}], "outputs": [...], "opset", "producer",
 *    "ops": {op: count}, "parameters", "metadata",
 *    "relus": [{"index","node","op","tensor","input","output","shape","width","supported","unsupportedOps"}]}
 */
import { NetmomentsError } from '../errors.js';
import { makeBatchDynamicProbed } from './batch.js';
import type { Dim, Graph } from './graph.js';
import { loadModel } from './load.js';
import { dataTypeName } from './proto.js';
import { hasDynamicBatch, tensorInfo, type TensorInfo } from './shapes.js';
import { partition } from './split.js';
import { splitPointOf, type SplitPoint } from './splitpoint.js';
import { isLinearizable } from './ops/registry.js';

export interface TensorSummary {
  name: string;
  type: string;
  shape: Dim[] | null;
}

export interface InspectRelu extends SplitPoint {
  /** The split op: Relu, LeakyRelu, PRelu or Clip (src/onnx/ops/splitPoint.ts). */
  op: string;
  /** The ReLU's output tensor (same as output). */
  tensor: string;
  /** Every op below and above this split has a tangent rule. */
  supported: boolean;
  unsupportedOps: string[];
}

export interface InspectReport {
  schema: 'netmoments.inspect/1';
  file: string;
  inputs: TensorSummary[];
  outputs: TensorSummary[];
  opset: number;
  producer: string;
  ops: Record<string, number>;
  parameters: number;
  metadata: Record<string, string>;
  relus: InspectRelu[];
  /**
   * Moments through every layer (`--method propagate`) on the path from the input to the first
   * output: whether every op has a moment rule, the ops that do not, and the unit-wise composites
   * fused (e.g. 'Sigmoid*Mul'), or why it cannot tell (`reason`: several data inputs, which
   * analyze fixes with --noise-input and --feed); added by the inspect command (src/propagate/
   * reads the graph).
   */
  propagate?: { supported: boolean; missing: string[]; fused: string[]; reason?: string };
}

function opName(domain: string, opType: string): string {
  return domain && domain !== 'ai.onnx' ? `${domain}.${opType}` : opType;
}

/** Ops of these nodes that the linearizer has no rule for (sorted, unique). */
export function unsupportedOps(nodes: Graph['nodes']): string[] {
  const out = new Set<string>();
  for (const n of nodes) {
    const custom = n.domain !== '' && n.domain !== 'ai.onnx';
    if (custom || !isLinearizable(n.opType)) out.add(opName(n.domain, n.opType));
  }
  return [...out].sort();
}

/** Number of weights: elements of floating-point initializers. */
export function parameterCount(graph: Graph): number {
  let n = 0;
  for (const t of graph.initializers.values()) if (t.data instanceof Float32Array || t.data instanceof Float64Array) n += t.data.length;
  return n;
}

/**
 * The tensor shapes inspect shows. A model that declares a dynamic batch is probed after the batch
 * rewrite the analysis applies (Linearizer.create: makeBatchDynamicProbed), so that a Reshape to a
 * constant [1, -1] does not stop the run at batch 2 and inspect, split and analyze see the same
 * model; a model with a fixed batch runs at batch 1 only, as declared. When the run at batch 2
 * still fails (the batch is baked in where the rewrite does not reach), the shapes are those at
 * batch 1 and `onNote` says so.
 */
export async function inspectTensorInfo(graph: Graph, file: string, onNote?: (message: string) => void): Promise<Map<string, TensorInfo>> {
  let probe = graph;
  if (graph.dataInputs.some(hasDynamicBatch)) {
    try {
      probe = await makeBatchDynamicProbed(graph, { file });
    } catch (e) {
      // the rewrite is refused (or its batch-1 run fails): probe the model as it is
      if (!(e instanceof NetmomentsError)) throw e;
    }
  }
  return tensorInfo(probe, {
    file,
    onBatch2Failure: (message) => onNote?.(`the model does not run at batch 2 (${message}); the shapes shown are at batch 1`),
  });
}

/** Build the inspect report of a loaded graph (runs the model once or twice at zeros for shapes). */
export async function inspectGraph(
  graph: Graph,
  file: string,
  info?: Map<string, TensorInfo>,
  options: { onNote?: (message: string) => void } = {},
): Promise<InspectReport> {
  const ops: Record<string, number> = {};
  for (const n of graph.nodes) {
    const k = opName(n.domain, n.opType);
    ops[k] = (ops[k] ?? 0) + 1;
  }
  const relus = graph.relus();
  const tinfo = info ?? (await inspectTensorInfo(graph, file, options.onNote));
  const outputs: TensorSummary[] = graph.outputs.map((o) => {
    const t = tinfo.get(o.name);
    return { name: o.name, type: dataTypeName(t?.elemType ?? o.elemType), shape: t ? [...t.dims] : (o.shape ?? null) };
  });
  const inspected: InspectRelu[] = relus.map((node, index) => {
    const sp = splitPointOf({ index, node }, tinfo, file);
    const p = partition(graph, { index, node }, { file });
    const bad = unsupportedOps([...p.bottom, ...p.top]);
    return {
      index: sp.index,
      node: sp.node,
      op: node.opType,
      tensor: sp.output,
      input: sp.input,
      output: sp.output,
      shape: sp.shape,
      width: sp.width,
      supported: bad.length === 0,
      unsupportedOps: bad,
    };
  });
  return {
    schema: 'netmoments.inspect/1',
    file,
    inputs: graph.dataInputs.map((i) => ({ name: i.name, type: dataTypeName(i.elemType), shape: i.shape ? [...i.shape] : null })),
    outputs,
    opset: graph.opset,
    producer: `${graph.producerName} ${graph.producerVersion}`.trim(),
    ops,
    parameters: parameterCount(graph),
    metadata: { ...graph.metadata },
    relus: inspected,
  };
}

/** Load a model file and build its inspect report. */
export async function inspectModel(file: string): Promise<InspectReport> {
  const model = loadModel(file);
  return inspectGraph(model.graph, file);
}
