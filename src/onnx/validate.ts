/**
 * Structural checks on a decoded ModelProto before it becomes a Graph, and on the Graph after.
 * Every problem is a one-line NetmomentsError naming the file. The checks guard against hostile or
 * broken files (docs/ONNX.md, "What the loader rejects"): absurd or negative dims, duplicate
 * names, tensors produced twice, subgraphs nested too deep, external data where it cannot be
 * resolved, non-finite weights.
 */
import { NetmomentsError } from '../errors.js';
import { hasSubgraph, type Graph, type GraphNode } from './graph.js';
import { isSplitPoint } from './ops/splitPoint.js';
import { DataType, toNumber, type GraphProto, type ModelProto, type TensorProto, type ValueInfoProto } from './proto.js';
import { decodeTensor } from './tensor.js';

/** Largest dimension we accept anywhere (2^31 - 1, what onnxruntime's int indexing tolerates). */
export const MAX_DIM = 2 ** 31 - 1;
/** Largest element count of a single declared tensor (2^32: 16 GiB of float32). */
export const MAX_ELEMENTS = 2 ** 32;
/** How deep If/Loop/Scan bodies may nest. */
export const MAX_SUBGRAPH_DEPTH = 16;
/** The IR versions we accept (ONNX 1.0 wrote IR 3; ONNX 1.10 IR 8; the newest releases IR 13). */
export const MAX_IR_VERSION = 13;

const CONTROL_FLOW = new Set(['If', 'Loop', 'Scan', 'SequenceMap']);

function fail(message: string, file?: string, code: 'BAD_INPUT' | 'UNSUPPORTED' = 'BAD_INPUT'): never {
  throw new NetmomentsError(message, { file, code });
}

function quote(s: string): string {
  const t = s.length > 80 ? `${s.slice(0, 77)}...` : s;
  return `'${t.replace(/[\u0000-\u001f\u007f]/g, '?')}'`;
}

/** Check one value_info's declared dims: no negative, no absurd ones. */
function checkValueInfoProto(vi: ValueInfoProto, what: string, file?: string): void {
  const dims = vi.type?.tensorType?.shape?.dim ?? [];
  if (dims.length > 64) fail(`${what} ${quote(vi.name ?? '')} declares ${dims.length} dimensions`, file);
  let count = 1;
  for (const d of dims) {
    if (d.dimValue === undefined || d.dimValue === null) continue;
    if (d.dimParam) continue;
    const v = toNumber(d.dimValue);
    if (!Number.isFinite(v) || v < 0) fail(`${what} ${quote(vi.name ?? '')} declares a negative dimension (${v})`, file);
    if (v > MAX_DIM) fail(`${what} ${quote(vi.name ?? '')} declares an absurd dimension (${v})`, file);
    count *= v;
  }
  if (count > MAX_ELEMENTS) fail(`${what} ${quote(vi.name ?? '')} declares ${count} elements, more than netmoments handles`, file);
}

/** Check a TensorProto's dims (before any data is touched). */
export function checkTensorDims(t: TensorProto, what: string, file?: string): void {
  const dims = (t.dims ?? []).map(toNumber);
  if (dims.length > 64) fail(`${what} ${quote(t.name ?? '')} declares ${dims.length} dimensions`, file);
  let count = 1;
  for (const d of dims) {
    if (!Number.isSafeInteger(d) || d < 0) fail(`${what} ${quote(t.name ?? '')} declares an invalid dimension (${d})`, file);
    if (d > MAX_DIM) fail(`${what} ${quote(t.name ?? '')} declares an absurd dimension (${d})`, file);
    count *= d;
  }
  if (count > MAX_ELEMENTS) fail(`${what} ${quote(t.name ?? '')} declares ${count} elements, more than netmoments handles`, file);
}

export interface SubgraphFacts {
  /** Top-level nodes that hold subgraphs (If/Loop/Scan bodies), by name. */
  controlFlowNodes: string[];
  /** Split points (ops/splitPoint.ts: Relu nodes) found inside subgraphs (at any depth), with the top-level node that holds them. */
  nestedRelus: { holder: string; relu: string }[];
}

/**
 * Walk every subgraph of a node (attributes g and graphs), depth-limited. Calls `visit` on each
 * nested node with the depth (1 = a body of a top-level node).
 */
function walkSubgraphs(
  attrs: GraphNode['attributes'],
  depth: number,
  visit: (n: NonNullable<GraphProto['node']>[number], depth: number, g: GraphProto) => void,
  file?: string,
): void {
  for (const a of attrs) {
    const graphs = [...(a.g ? [a.g] : []), ...(a.graphs ?? [])];
    for (const g of graphs) {
      if (depth > MAX_SUBGRAPH_DEPTH) fail(`control-flow subgraphs nest deeper than ${MAX_SUBGRAPH_DEPTH} levels`, file);
      for (const n of g.node ?? []) {
        visit(n, depth, g);
        walkSubgraphs(n.attribute ?? [], depth + 1, visit, file);
      }
    }
  }
}

/** What the subgraphs of a graph hold (used to explain why a ReLU cannot be split). */
export function subgraphFacts(graph: Graph): SubgraphFacts {
  const facts: SubgraphFacts = { controlFlowNodes: [], nestedRelus: [] };
  for (const n of graph.nodes) {
    if (!hasSubgraph(n) && !CONTROL_FLOW.has(n.opType)) continue;
    facts.controlFlowNodes.push(n.name);
    walkSubgraphs(n.attributes, 1, (inner) => {
      if (isSplitPoint(inner.opType, inner.domain)) {
        facts.nestedRelus.push({ holder: n.name, relu: inner.name || inner.output?.[0] || inner.opType! });
      }
    });
  }
  return facts;
}

/**
 * Checks on the decoded protobuf. Throws a one-line error naming the file for anything that is not
 * a usable model. Run before graphFromModelProto.
 */
export function validateModelProto(model: ModelProto, file?: string): void {
  const gp = model.graph;
  if (!gp) fail('not an ONNX model: the file holds no graph', file);
  const ir = toNumber(model.irVersion ?? 0);
  if (!Number.isInteger(ir) || ir < 1) fail(`not an ONNX model: IR version ${ir} is invalid`, file);
  if (ir > MAX_IR_VERSION) fail(`ONNX IR version ${ir} is newer than netmoments reads (at most ${MAX_IR_VERSION})`, file, 'UNSUPPORTED');
  for (const o of model.opsetImport ?? []) {
    const v = toNumber(o.version ?? 0);
    if (!Number.isInteger(v) || v < 1 || v > 1000) fail(`opset import ${quote(o.domain ?? '')} has invalid version ${v}`, file);
  }
  const nodes = gp.node ?? [];
  const hasDefaultOpset = (model.opsetImport ?? []).some((o) => !o.domain || o.domain === 'ai.onnx');
  if (!hasDefaultOpset && nodes.some((n) => !n.domain || n.domain === 'ai.onnx')) {
    fail('the model uses ai.onnx operators but imports no ai.onnx opset', file);
  }

  // Names: inputs, initializers, outputs; no tensor produced twice.
  const defined = new Set<string>();
  const inputNames = new Set<string>();
  for (const vi of gp.input ?? []) {
    const name = vi.name ?? '';
    if (!name) fail('a graph input has an empty name', file);
    if (inputNames.has(name)) fail(`graph input ${quote(name)} is declared twice`, file);
    inputNames.add(name);
    checkValueInfoProto(vi, 'input', file);
  }
  for (const name of inputNames) defined.add(name);
  const initNames = new Set<string>();
  for (const t of gp.initializer ?? []) {
    const name = t.name ?? '';
    if (!name) fail('an initializer has an empty name', file);
    if (initNames.has(name)) fail(`initializer ${quote(name)} is declared twice`, file);
    initNames.add(name);
    defined.add(name);
    checkTensorDims(t, 'initializer', file);
  }
  for (const s of gp.sparseInitializer ?? []) {
    const name = s.values?.name ?? '';
    if (!name) fail('a sparse initializer has an empty name', file);
    if (initNames.has(name)) fail(`initializer ${quote(name)} is declared twice`, file);
    initNames.add(name);
    defined.add(name);
  }
  for (const vi of gp.output ?? []) {
    if (!vi.name) fail('a graph output has an empty name', file);
    checkValueInfoProto(vi, 'output', file);
  }
  for (const vi of gp.valueInfo ?? []) checkValueInfoProto(vi, 'value_info', file);

  for (const n of nodes) {
    const label = quote(n.name || n.output?.[0] || n.opType || '?');
    if (!n.opType) fail(`node ${label} has no op type`, file);
    if ((n.output ?? []).length === 0) fail(`node ${label} (${n.opType}) has no outputs`, file);
    for (const o of n.output ?? []) {
      if (!o) continue; // omitted optional output
      if (defined.has(o)) fail(`tensor ${quote(o)} is produced twice (node ${label}); ONNX graphs assign every tensor once`, file);
      defined.add(o);
    }
    for (const a of n.attribute ?? []) {
      if (a.t) {
        checkTensorDims(a.t, `tensor attribute of node ${label}`, file);
        if (a.t.dataLocation === 1) fail(`node ${label} holds a tensor attribute with external data, which netmoments does not resolve`, file, 'UNSUPPORTED');
      }
      for (const t of a.tensors ?? []) checkTensorDims(t, `tensor attribute of node ${label}`, file);
    }
  }
  // Subgraph nesting depth and external data inside bodies.
  for (const n of nodes) {
    walkSubgraphs(
      (n.attribute ?? []) as GraphNode['attributes'],
      1,
      (inner, _depth, g) => {
        void inner;
        for (const t of g.initializer ?? []) {
          if (t.dataLocation === 1)
            fail(
              `a subgraph of node ${quote(n.name || n.opType || '?')} holds external-data initializer ${quote(t.name ?? '')}, which netmoments does not resolve`,
              file,
              'UNSUPPORTED',
            );
        }
      },
      file,
    );
  }
  for (const vi of gp.output ?? []) {
    if (!defined.has(vi.name ?? '')) fail(`graph output ${quote(vi.name ?? '')} is not produced by any node, input or initializer`, file);
  }
}

/** NaN or +-Inf in a float initializer (or Constant node) is an error naming the tensor. */
export function checkFinite(graph: Graph, file?: string): void {
  const scan = (data: ArrayLike<number>, what: string): void => {
    for (let i = 0; i < data.length; i++) {
      const v = data[i];
      if (!Number.isFinite(v)) {
        fail(`${what} holds a non-finite value (${Number.isNaN(v) ? 'NaN' : v > 0 ? '+Inf' : '-Inf'} at element ${i}); the weights are broken`, file);
      }
    }
  };
  for (const t of graph.initializers.values()) {
    if (t.data instanceof Float32Array || t.data instanceof Float64Array) scan(t.data, `initializer ${quote(t.name)}`);
  }
  for (const n of graph.nodes) {
    if (n.opType !== 'Constant') continue;
    for (const a of n.attributes) {
      if (a.t && (a.t.dataType === DataType.FLOAT || a.t.dataType === DataType.DOUBLE)) {
        scan(decodeTensor(a.t).data as Float32Array, `Constant node ${quote(n.name)}`);
      }
      if (a.name === 'value_float' && a.f !== undefined && a.f !== null) scan([a.f], `Constant node ${quote(n.name)}`);
      if (a.name === 'value_floats' && a.floats) scan(a.floats, `Constant node ${quote(n.name)}`);
    }
  }
}
