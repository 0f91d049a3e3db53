/**
 * Making the batch dimension dynamic. Exported models often fix batch 1 (a torch export without
 * dynamic_axes), and onnxruntime then refuses any other batch size. The rewrite:
 *
 * - every data input's leading dim becomes the symbol 'N' (an existing symbol is kept);
 * - model outputs that depend on the input get 'N' as leading dim when it was 1;
 * - value_info entries (intermediate shapes recorded at batch 1) are dropped;
 * - Reshape nodes whose data depends on the input and whose target shape is a constant with leading
 *   1 get a new shape constant: leading -1 when no other -1 is present (valid with or without
 *   allowzero); leading 0 ("copy dim 0 of the input") when another -1 is present and allowzero is 0;
 *   with allowzero = 1 and another -1, the other dims are made explicit from the shapes at batch 1
 *   (options.shapes) and the leading dim becomes -1;
 * - Reshape nodes whose target shape is computed from constants only (torch with
 *   do_constant_folding=False: Constant -> Unsqueeze -> Concat) and whose value at batch 1
 *   (options.values) starts with 1 get the same explicit shape: -1, then the other dims of the
 *   output at batch 1. The chain that computed the old shape is dropped when nothing else reads it.
 *
 * The explicit form needs the Reshape's data and output at batch 1 to lead with 1 (the batch) and
 * no zero-sized dim; otherwise the Reshape is left alone (or, for allowzero, refused by name).
 * makeBatchDynamicProbed finds the Reshapes that need batch-1 shapes or values and runs the model
 * once at batch 1 for them (the same exposed-outputs run as shapes.ts tensorInfo).
 *
 * - Reshape nodes whose target shape is computed from the data input only through Shape/Size
 *   (torch's x.view(x.size(0), -1): Shape -> Gather -> Concat, the dynamo exporter's Shape(start=0,
 *   end=1) -> Concat with allowzero=1) get the same explicit shape when the probe has their values;
 *   without a probe (makeBatchDynamic alone) they are left alone, as they follow the real shape
 *   already. Made constant, no int64 shape tensor crosses a split of the model.
 * - A Reshape that produces a model output and folds the batch into axis 0 (at batch 1 its data
 *   leads with 1 and its output does not: skl2onnx's final Reshape to [-1, 1] of [N, 5] gives
 *   [5N, 1]) gets the shape [-1, ...its output at batch 1], and the output the dims [N, ...]: the
 *   values per input stay as they were, and the batch gets its own axis.
 *
 * Other constants that bake the batch in (Expand, Tile, ConstantOfShape shapes) are not rewritten;
 * docs/ONNX.md says so.
 */
import { NetmomentsError } from '../errors.js';
import { checkShapeProbe } from '../resources.js';
import type { Graph, GraphNode } from './graph.js';
import { attrInt, freshBatchName, graphConstant } from './graph.js';
import { DataType, type GraphProto } from './proto.js';
import { runWithIntermediates, zeroFeeds, type RunOptions } from './shapes.js';
import { toIntegers, type TensorValue } from './tensor.js';

export interface BatchDynamicOptions {
  /** The batch symbol (default 'N'). */
  symbol?: string;
  /**
   * Tensor dims at batch 1 (shapes.ts intermediateShapes): needed for allowzero Reshapes that hold a
   * -1 and for Reshapes whose shape is computed (makeBatchDynamicProbed fills them).
   */
  shapes?: ReadonlyMap<string, readonly number[]>;
  /** Values at batch 1 of Reshape shape tensors computed from constants (makeBatchDynamicProbed fills them). */
  values?: ReadonlyMap<string, readonly number[]>;
  file?: string;
}

/** Data inputs whose leading dim is the batch: 1, unknown or a symbol. */
function batchedInputs(graph: Graph): Set<string> {
  const out = new Set<string>();
  for (const inp of graph.inputs) {
    if (graph.initializers.has(inp.name) || !inp.shape || inp.shape.length === 0) continue;
    const d0 = inp.shape[0];
    if (d0 === 1 || d0 === null || typeof d0 === 'string') out.add(inp.name);
  }
  return out;
}

/** `roots` and every tensor a node computes from them (graph order is topological). */
function dependents(graph: Graph, roots: Iterable<string>): Set<string> {
  return graph.walk(roots, 'down').tensors;
}

/**
 * A Reshape the rewrite looks at: its data depends on a batched input, and its shape is a constant
 * (`value`) or computed from constants only (`computed`). Shapes computed from a data input
 * (Shape -> Gather -> Concat) follow the batch already and are not listed.
 */
interface BatchReshape {
  node: GraphNode;
  /** The constant shape, when the shape input is an initializer or a Constant node. */
  value?: number[];
  /** The shape is computed: from constants only, or from the data input's Shape (see `fromShape`). */
  computed: boolean;
  /**
   * The shape is computed from the data only through Shape/Size nodes (torch's x.view(x.size(0), -1):
   * Shape -> Gather -> Concat). Its value at batch 1 is a function of the input's fixed dims; the
   * rewrite replaces it by the explicit constant so that no int64 shape tensor crosses a split.
   */
  fromShape: boolean;
  allowzero: boolean;
  /** The Reshape's output is a model output (a reshape there may fold the batch into axis 0, see needsShapes). */
  isOutput: boolean;
}

/**
 * Whether `name` depends on the data inputs only through Shape or Size nodes (so that its value
 * follows the input's dims, not its values). False when it does not depend on them at all.
 */
function onlyThroughShape(graph: Graph, name: string): boolean {
  const data = new Set(graph.dataInputs.map((i) => i.name));
  const seen = new Set<string>();
  let reachesData = false;
  const walk = (t: string): boolean => {
    if (!t || seen.has(t)) return true;
    seen.add(t);
    if (data.has(t)) return false;
    const p = graph.producerOf(t);
    if (!p) return true;
    if (p.opType === 'Shape' || p.opType === 'Size') {
      reachesData ||= dependents(graph, data).has(p.inputs[0]);
      return true;
    }
    if (p.domain !== '' && p.domain !== 'ai.onnx') return false;
    return p.inputs.every(walk);
  };
  return walk(name) && reachesData;
}

function batchReshapes(graph: Graph, batched: ReadonlySet<string>): BatchReshape[] {
  const dep = dependents(graph, batched);
  const fromData = dependents(
    graph,
    graph.dataInputs.map((i) => i.name),
  );
  const outputs = new Set(graph.outputs.map((o) => o.name));
  const out: BatchReshape[] = [];
  for (const n of graph.nodes) {
    if (n.opType !== 'Reshape' || (n.domain !== '' && n.domain !== 'ai.onnx')) continue;
    if (n.inputs.length < 2 || !n.inputs[1] || !dep.has(n.inputs[0])) continue;
    const allowzero = attrInt(n, 'allowzero', 0) === 1;
    const isOutput = outputs.has(n.outputs[0]);
    const value = graphConstant(graph, n.inputs[1]);
    if (value) out.push({ node: n, value: toIntegers(value), computed: false, fromShape: false, allowzero, isOutput });
    else if (!fromData.has(n.inputs[1])) out.push({ node: n, computed: true, fromShape: false, allowzero, isOutput });
    else if (onlyThroughShape(graph, n.inputs[1])) out.push({ node: n, computed: true, fromShape: true, allowzero, isOutput });
  }
  return out;
}

/**
 * A Reshape the rewrite can only make explicit from the shapes at batch 1: a computed shape; a
 * constant [1, ...] with allowzero=1 and a -1 elsewhere; a model output whose constant shape does
 * not start with 1 (skl2onnx's final Reshape to [-1, 1] turns [N, 5] into [5N, 1]: the batch
 * folded into axis 0, which the rewrite undoes when the shapes at batch 1 show it).
 */
function needsShapes(r: BatchReshape): boolean {
  const s = r.value;
  if (r.computed) return true;
  if (!s || s.length === 0) return false;
  return (s[0] === 1 && r.allowzero && s.slice(1).includes(-1)) || (s[0] !== 1 && r.isOutput);
}

/**
 * Tensors whose dims (and, for computed shapes, values) at batch 1 makeBatchDynamic needs: the
 * data, shape and output of every Reshape it cannot rewrite from its constant shape alone. Empty
 * for most models.
 */
export function batchProbeTensors(graph: Graph): string[] {
  const names = new Set<string>();
  for (const r of batchReshapes(graph, batchedInputs(graph))) {
    if (!needsShapes(r)) continue;
    names.add(r.node.inputs[0]);
    if (r.computed) names.add(r.node.inputs[1]);
    names.add(r.node.outputs[0]);
  }
  return [...names];
}

/**
 * The shape with the batch explicit: -1, then the output's other dims at batch 1; undefined unless
 * the data and the output both lead with 1 at batch 1 (the batch stays on axis 0) and no dim is 0
 * (a -1 cannot be inferred from an empty tensor).
 */
function explicitShape(n: GraphNode, shapes: BatchDynamicOptions['shapes']): number[] | undefined {
  const data = shapes?.get(n.inputs[0]);
  const out = shapes?.get(n.outputs[0]);
  if (!data || !out || data.length === 0 || out.length === 0) return undefined;
  if (data[0] !== 1 || out[0] !== 1 || out.includes(0)) return undefined;
  return [-1, ...out.slice(1)];
}

/**
 * The output dims at batch 1 of a Reshape that folds the batch into its output's axis 0: its data
 * leads with the batch (1) but its output does not (e.g. [1, 5] -> [5, 1]). Undefined otherwise.
 */
function foldedBatch(n: GraphNode, shapes: BatchDynamicOptions['shapes']): number[] | undefined {
  const data = shapes?.get(n.inputs[0]);
  const out = shapes?.get(n.outputs[0]);
  if (!data || !out || data.length === 0 || out.length === 0) return undefined;
  if (data[0] !== 1 || out[0] === 1 || out.includes(0)) return undefined;
  return [...out];
}

function fmt(dims: readonly number[] | undefined): string {
  return dims ? `[${dims.join(', ')}]` : '(unknown)';
}

/** Every tensor name a node (or a node of a subgraph body, at any depth) reads. */
function readNames(
  nodes: readonly { inputs?: string[] | null; input?: string[] | null; attributes?: GraphNode['attributes']; attribute?: GraphNode['attributes'] | null }[],
): Set<string> {
  const read = new Set<string>();
  const walk = (ns: typeof nodes): void => {
    for (const n of ns) {
      for (const x of n.inputs ?? n.input ?? []) if (x) read.add(x);
      for (const a of n.attributes ?? n.attribute ?? []) {
        for (const g of [...(a.g ? [a.g] : []), ...(a.graphs ?? [])] as GraphProto[]) walk(g.node ?? []);
      }
    }
  };
  walk(nodes);
  return read;
}

/**
 * Drop what computed the old shapes when nothing reads it any more: initializers, Constant nodes
 * and constant-only chains (Constant -> Unsqueeze -> Concat).
 */
function dropUnread(g: Graph, oldShapes: Iterable<string>): void {
  let pending = [...oldShapes];
  while (pending.length > 0) {
    const read = readNames(g.nodes);
    const kept = new Set<string>([...g.outputs.map((o) => o.name), ...g.inputs.map((i) => i.name)]);
    const next: string[] = [];
    for (const name of pending) {
      if (read.has(name) || kept.has(name)) continue;
      if (g.initializers.has(name)) {
        g.initializers.delete(name);
        continue;
      }
      const p = g.producerOf(name);
      if (!p || p.outputs.some((o) => o && (read.has(o) || kept.has(o)))) continue;
      g.nodes = g.nodes.filter((n) => n !== p);
      next.push(...p.inputs.filter((x) => x));
    }
    pending = next;
  }
}

/** A copy of `graph` that accepts any batch size (see the module comment for what is rewritten). */
export function makeBatchDynamic(graph: Graph, options: BatchDynamicOptions = {}): Graph {
  const symbol = options.symbol ?? 'N';
  const g = graph.clone();
  const batched = batchedInputs(g);
  g.inputs = g.inputs.map((inp) => {
    if (!batched.has(inp.name)) return inp;
    const d0 = inp.shape![0];
    return { ...inp, shape: [typeof d0 === 'string' && d0 ? d0 : symbol, ...inp.shape!.slice(1)] };
  });
  const dep = dependents(g, batched);
  const rewrite = new Map<GraphNode, number[]>();
  const foldedOutputs = new Map<string, number[]>();
  for (const r of batchReshapes(g, batched)) {
    const n = r.node;
    const folded = r.isOutput ? foldedBatch(n, options.shapes) : undefined;
    if (folded) {
      // [-1, ...output at batch 1]: the batch gets its own axis again; the values per input are unchanged
      rewrite.set(n, [-1, ...folded]);
      foldedOutputs.set(n.outputs[0], folded);
      continue;
    }
    const s = r.computed ? options.values?.get(n.inputs[1]) : r.value;
    if (!s || s.length === 0 || s[0] !== 1) continue; // computed without a probe, or the batch is not baked in
    let next: number[] | undefined;
    if (r.computed) next = explicitShape(n, options.shapes);
    else if (!s.slice(1).includes(-1)) next = [-1, ...s.slice(1)];
    else if (!r.allowzero) next = [0, ...s.slice(1)];
    else {
      next = explicitShape(n, options.shapes);
      if (!next) {
        throw new NetmomentsError(
          options.shapes
            ? `Reshape '${n.name}' fixes batch 1 with allowzero=1 and a -1 elsewhere, and at batch 1 its data ${fmt(options.shapes.get(n.inputs[0]))} ` +
                `and output ${fmt(options.shapes.get(n.outputs[0]))} do not both lead with the batch; netmoments cannot make its batch dynamic`
            : `Reshape '${n.name}' fixes batch 1 with allowzero=1 and a -1 elsewhere; makeBatchDynamic needs the shapes at batch 1 for it (options.shapes, or use makeBatchDynamicProbed)`,
          { file: options.file, code: 'UNSUPPORTED' },
        );
      }
    }
    if (next) rewrite.set(n, next);
  }
  const oldShapes = new Set<string>();
  g.nodes = g.nodes.map((n) => {
    const next = rewrite.get(n);
    if (!next) return n;
    const shapeName = n.inputs[1];
    const name = freshBatchName(g, shapeName);
    g.initializers.set(name, { name, dataType: DataType.INT64, dims: [next.length], data: BigInt64Array.from(next, (x) => BigInt(x)) });
    oldShapes.add(shapeName);
    return { ...n, inputs: [n.inputs[0], name, ...n.inputs.slice(2)] };
  });
  dropUnread(g, oldShapes);
  g.outputs = g.outputs.map((o) => {
    const folded = foldedOutputs.get(o.name);
    if (folded) return { ...o, shape: [symbol, ...folded] };
    return dep.has(o.name) && o.shape && o.shape.length > 0 && (o.shape[0] === 1 || o.shape[0] === null) ? { ...o, shape: [symbol, ...o.shape.slice(1)] } : o;
  });
  g.valueInfo = new Map();
  return g;
}

/**
 * makeBatchDynamic with the shapes and values at batch 1 it needs, from one run of the model at
 * zeros at batch 1 with those tensors exposed (only when some Reshape needs them: a shape computed
 * from constants, or allowzero=1 with a -1 elsewhere). What the analysis path, inspect and split
 * all use, so that they see the same rewritten model.
 */
export async function makeBatchDynamicProbed(graph: Graph, options: BatchDynamicOptions & RunOptions = {}): Promise<Graph> {
  const names = batchProbeTensors(graph);
  if (names.length === 0) return makeBatchDynamic(graph, options);
  checkShapeProbe(graph.dataInputs, options.file);
  const run = await runWithIntermediates(graph, zeroFeeds(graph, 1, options.file), names, { ...options, runOnce: true });
  const shapes = new Map<string, readonly number[]>(options.shapes ?? []);
  const values = new Map<string, readonly number[]>(options.values ?? []);
  for (const name of names) {
    const t = run[name];
    if (!t) continue;
    shapes.set(name, [...t.dims]);
    if (t.type === 'int64' || t.type === 'int32') values.set(name, Array.from(t.data as ArrayLike<number | bigint>, Number));
  }
  return makeBatchDynamic(graph, { ...options, shapes, values });
}
