/**
 * The adjoint-graph driver (reverse-mode AD over an ONNX graph, one VJP rule per op as in JAX's
 * transpose rules). It emits every primal node unchanged (the primal branch runs on the
 * linearization point with batch 1, an input of the model), marks the tensors that vary with the
 * designated inputs, then walks the nodes backwards from the requested outputs: each node on a path
 * from a varying input to an output gets the cotangents of its outputs (summed over their
 * consumers) and its op's adjoint rule (src/onnx/ops/registry.ts adjointRule) emits the nodes that
 * give its varying inputs theirs, for a batch of k cotangent rows at once.
 *
 * The resulting model has, per primal input x, an input x of shape [1, ...]; per requested output y,
 * a cotangent input of shape [k, ...y.shape[1:]] (the rows U) and the primal y (batch 1) as an
 * output; per varying input, the output sum_y U_y J_y, of shape [k, ...x.shape[1:]] (the rows of
 * U J, i.e. J^T u for each row u).
 */
import { NetmomentsError } from '../../errors.js';
import { Graph, type ValueInfo } from '../graph.js';
import { DataType } from '../proto.js';
import { OpsetTooOld, TangentBuilder } from './builder.js';
import { adjointRule, hasNoTangent, isDefaultDomain } from '../ops/registry.js';
import { inputDims, type PrimalInputSpec } from './build.js';
import { MissingAdjointRuleError, type AdjointContext } from './types.js';

export interface AdjointModelOptions {
  /** Graph inputs that get cotangents (the Jacobian's columns). */
  varying: string[];
  /** Tensors whose cotangents are fed (the Jacobian's rows). */
  outputs: string[];
  /** Static shapes of primal tensors at batch 1 (most adjoint rules need them). */
  shapes?: ReadonlyMap<string, readonly number[]>;
  /**
   * Whether the model also outputs the requested outputs' primal values (default true). Without
   * them the primal nodes the cotangents do not read are pruned: an affine segment's VJP
   * (src/propagate/segment.ts) reads no primal value, and a primal Gemm or Conv left in would have
   * onnxruntime pre-pack its weights a second time when the session is made (AlexNet's fc6: 151 MB).
   */
  primalOutputs?: boolean;
}

export interface AdjointModel {
  /** The model serialized, on first read (a caller may first change `graph`, e.g. move weights to inputs: src/onnx/weightInputs.ts). */
  readonly bytes: Uint8Array;
  graph: Graph;
  primalInputs: PrimalInputSpec[];
  /** requested output -> name of its cotangent input ([k, ...]). */
  cotangentInputs: Record<string, string>;
  /** requested output -> name of the model output holding its primal value (batch 1; none when options.primalOutputs is false). */
  primalOutputs: Record<string, string>;
  /** varying input -> name of the model output holding its cotangent ([k, ...]). */
  cotangentOutputs: Record<string, string>;
  /** Primal tensors that carry a cotangent (for memory estimates). */
  adjointTensors: string[];
}

export function buildAdjointModel(source: Graph, options: AdjointModelOptions): AdjointModel {
  const graph = source.clone();
  graph.sortTopologically();
  if (options.varying.length === 0) throw new NetmomentsError('adjoint model: no varying inputs given', { code: 'BAD_USAGE' });
  if (options.outputs.length === 0) throw new NetmomentsError('adjoint model: no outputs given', { code: 'BAD_USAGE' });
  if (graph.opset < 7) throw new MissingAdjointRuleError('(model)', graph.name, `opset ${graph.opset} is older than the adjoint rules support (7)`);
  const dataInputs = graph.dataInputs;
  const dataInputNames = new Set(dataInputs.map((i) => i.name));
  for (const v of options.varying) {
    if (!dataInputNames.has(v)) throw new NetmomentsError(`adjoint model: '${v}' is not an input of the graph`, { code: 'BAD_USAGE' });
  }
  const produced = new Set<string>([...dataInputNames, ...graph.initializers.keys(), ...graph.producedTensors()]);
  for (const o of options.outputs) {
    if (!produced.has(o)) throw new NetmomentsError(`adjoint model: no tensor named '${o}' in the graph`, { code: 'BAD_USAGE' });
  }
  const needed = graph.walk(options.outputs, 'up').tensors;

  // Tensors that vary with the varying inputs (outputs of shape and index computations never do).
  const active = new Set<string>(options.varying);
  for (const node of graph.nodes) {
    if (hasNoTangent(node.opType) && isDefaultDomain(node.domain)) continue;
    if (node.inputs.some((x) => x && active.has(x))) for (const o of node.outputs) if (o) active.add(o);
  }

  const b = new TangentBuilder(graph, options.shapes);
  for (const node of graph.nodes) b.nodes.push(node); // the primal nodes, unchanged
  const cotangentInputs: Record<string, string> = {};
  for (const o of options.outputs) cotangentInputs[o] = b.fresh(`${o}__cotangent`);
  b.setBatchSource(cotangentInputs[options.outputs[0]]);

  // Cotangent terms per tensor, summed when a tensor's last consumer (first in reverse order) asks.
  const terms = new Map<string, string[]>();
  const addTerm = (tensor: string, ct: string) => {
    const list = terms.get(tensor);
    if (list) list.push(ct);
    else terms.set(tensor, [ct]);
  };
  const cotangentOf = (tensor: string): string | undefined => {
    const list = terms.get(tensor);
    if (!list || list.length === 0) return undefined;
    if (list.length > 1) terms.set(tensor, [b.op('Sum', list)]);
    return terms.get(tensor)![0];
  };
  for (const o of options.outputs) if (active.has(o)) addTerm(o, cotangentInputs[o]);

  for (let i = graph.nodes.length - 1; i >= 0; i--) {
    const node = graph.nodes[i];
    if (!node.outputs.some((o) => o && terms.has(o))) continue;
    if (!node.inputs.some((x) => x && active.has(x))) continue;
    const label = node.name || node.opType;
    const rule = adjointRule(node.opType, node.domain);
    if (!rule) {
      const what = isDefaultDomain(node.domain) ? 'no rule for this op' : `no rule for ops of domain '${node.domain}'`;
      throw new MissingAdjointRuleError(node.opType, label, what);
    }
    const ctx: AdjointContext = {
      node,
      opset: graph.opset,
      b,
      ct: (k) => (node.outputs[k] ? cotangentOf(node.outputs[k]) : undefined),
      varies: (k) => !!node.inputs[k] && active.has(node.inputs[k]),
      x: (k) => node.inputs[k] ?? '',
      y: (k) => node.outputs[k] ?? '',
      unsupported: (reason) => {
        throw new MissingAdjointRuleError(node.opType, label, reason);
      },
    };
    let outs: (string | undefined)[];
    try {
      outs = rule(ctx);
    } catch (e) {
      if (e instanceof OpsetTooOld) throw new MissingAdjointRuleError(node.opType, label, e.message);
      throw e;
    }
    node.inputs.forEach((x, k) => {
      const ct = outs[k];
      if (x && ct && active.has(x)) addTerm(x, ct);
    });
  }

  const elemTypeOf = (name: string): number =>
    graph.outputs.find((o) => o.name === name)?.elemType ||
    graph.valueInfo.get(name)?.elemType ||
    graph.inputs.find((i) => i.name === name)?.elemType ||
    DataType.FLOAT;
  const graphInputNames = new Set<string>([...dataInputNames, ...Object.values(cotangentInputs)]);
  const outputNames = new Set<string>();
  const outputs: ValueInfo[] = [];
  const exposeAs = (name: string, base: string): string => {
    if (graphInputNames.has(name) || graph.initializers.has(name) || b.initializers.has(name) || outputNames.has(name)) {
      const out = b.fresh(base);
      b.emit('Identity', [name], [out]);
      return out;
    }
    return name;
  };
  const primalOutputs: Record<string, string> = {};
  for (const o of options.primalOutputs === false ? [] : options.outputs) {
    const p = exposeAs(o, `${o}__primal`);
    outputNames.add(p);
    outputs.push({ name: p, elemType: elemTypeOf(o) });
    primalOutputs[o] = p;
  }
  const cotangentOutputs: Record<string, string> = {};
  for (const v of options.varying) {
    const ct = exposeAs(cotangentOf(v) ?? b.zerosLike(v), `${v}__cotangent_out`);
    outputNames.add(ct);
    outputs.push({ name: ct, elemType: DataType.FLOAT });
    cotangentOutputs[v] = ct;
  }

  const primalInputs: PrimalInputSpec[] = [];
  for (const inp of dataInputs) {
    const varying = options.varying.includes(inp.name);
    if (!needed.has(inp.name) && !varying) continue;
    primalInputs.push({ name: inp.name, elemType: inp.elemType || DataType.FLOAT, ...inputDims(inp, varying, options.shapes), varying });
  }
  const outDims = (o: string): (number | string)[] => {
    const s = options.shapes?.get(o);
    return s ? ['k', ...s.slice(1)] : ['k'];
  };

  const ag = new Graph();
  ag.name = `${graph.name}_adjoint`;
  ag.opsetImports = graph.opsetImports.map((o) => ({ ...o }));
  ag.irVersion = Math.max(graph.irVersion, 4);
  ag.producerName = 'netmoments';
  ag.inputs = [
    ...primalInputs.map((p) => ({ name: p.name, elemType: p.elemType, shape: p.batched ? [1, ...p.dims] : p.dims })),
    ...options.outputs.map((o) => ({ name: cotangentInputs[o], elemType: DataType.FLOAT, shape: options.shapes?.get(o) ? outDims(o) : undefined })),
  ];
  ag.outputs = outputs;
  ag.nodes = b.nodes;
  ag.initializers = new Map([...graph.initializers, ...b.initializers]);
  ag.prune();
  let bytes: Uint8Array | undefined;
  return {
    get bytes() {
      return (bytes ??= ag.toBytes());
    },
    graph: ag,
    primalInputs,
    cotangentInputs,
    primalOutputs,
    cotangentOutputs,
    adjointTensors: [...terms.keys()],
  };
}
