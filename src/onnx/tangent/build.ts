/**
 * The tangent-graph driver (forward-mode AD over an ONNX graph, one rule per op as in JAX's JVP
 * rules). It walks the graph in topological order, emits every primal node unchanged (the primal
 * branch runs on the linearization point with batch 1 inside the tangent model: the point is an
 * input, never a constant), tracks which tensors vary with the designated inputs, and asks each
 * op's rule (src/onnx/ops/registry.ts) for the nodes that carry the tangents of a batch of k directions.
 *
 * The resulting model has, per primal input x, an input x of shape [1, ...] and, per varying input,
 * a tangent input of shape [k, ...x.shape[1:]]; per requested output y, the primal y (batch 1) and
 * its tangent J_y * T of shape [k, ...y.shape[1:]].
 */
import { NetmomentsError } from '../../errors.js';
import { Graph, type ValueInfo } from '../graph.js';
import { DataType } from '../proto.js';
import { OpsetTooOld, TangentBuilder } from './builder.js';
import { isDefaultDomain, tangentRule } from '../ops/registry.js';
import { MissingTangentRuleError, type RuleContext } from './types.js';

export interface TangentModelOptions {
  /** Graph inputs that get tangents (the Jacobian's columns). */
  varying: string[];
  /** Tensors (graph outputs or intermediate tensors) whose tangents to return (the Jacobian's rows). */
  outputs: string[];
  /**
   * Static shapes of primal tensors at batch 1, when known (e.g. from one probe run): they let rules
   * check axes and skip needless broadcasts. Without them the rules use run-time shapes.
   */
  shapes?: ReadonlyMap<string, readonly number[]>;
}

export interface PrimalInputSpec {
  name: string;
  /** ONNX element type (1 = float32). */
  elemType: number;
  /** Per-sample dims when batched (the primal runs as [1, ...dims]); else the full dims. */
  dims: number[];
  /** Whether its leading axis is the batch axis (always so for varying inputs). */
  batched: boolean;
  /** Whether it gets a tangent. */
  varying: boolean;
}

export interface TangentModel {
  /**
   * The model serialized, on first read: a caller that extends `graph` first (propagate's segments
   * add the variance model) never reads it, and the bytes would have held a copy of the weights.
   */
  readonly bytes: Uint8Array;
  graph: Graph;
  /** Inputs to feed with the linearization point, batch 1, in graph order. */
  primalInputs: PrimalInputSpec[];
  /** varying input name -> name of its tangent input ([k, ...dims]). */
  tangentInputs: Record<string, string>;
  /** requested output -> name of the model output holding its primal value (batch 1). */
  primalOutputs: Record<string, string>;
  /** requested output -> name of the model output holding its tangent ([k, ...]). */
  tangentOutputs: Record<string, string>;
  /** Primal tensors that carry a tangent (for memory estimates). */
  tangentTensors: string[];
}

export function buildTangentModel(source: Graph, options: TangentModelOptions): TangentModel {
  const graph = source.clone();
  graph.sortTopologically();
  if (options.varying.length === 0) throw new NetmomentsError('tangent model: no varying inputs given', { code: 'BAD_USAGE' });
  if (options.outputs.length === 0) throw new NetmomentsError('tangent model: no outputs given', { code: 'BAD_USAGE' });
  if (graph.opset < 7) {
    throw new MissingTangentRuleError('(model)', graph.name, `opset ${graph.opset} is older than the tangent rules support (7)`);
  }
  const dataInputs = graph.dataInputs;
  const dataInputNames = new Set(dataInputs.map((i) => i.name));
  for (const v of options.varying) {
    if (!dataInputNames.has(v)) {
      throw new NetmomentsError(`tangent model: '${v}' is not an input of the graph (inputs: ${[...dataInputNames].join(', ')})`, {
        code: 'BAD_USAGE',
      });
    }
  }
  const produced = new Set<string>([...dataInputNames, ...graph.initializers.keys(), ...graph.producedTensors()]);
  for (const o of options.outputs) {
    if (!produced.has(o)) throw new NetmomentsError(`tangent model: no tensor named '${o}' in the graph`, { code: 'BAD_USAGE' });
  }

  // Tensors the requested outputs depend on.
  const needed = graph.walk(options.outputs, 'up').tensors;

  const b = new TangentBuilder(graph, options.shapes);
  const tangent = new Map<string, string>();
  const tangentInputs: Record<string, string> = {};
  for (const v of options.varying) {
    const t = b.fresh(`${v}__tangent`);
    tangent.set(v, t);
    tangentInputs[v] = t;
  }
  b.setBatchSource(tangentInputs[options.varying[0]]);

  for (const node of graph.nodes) {
    b.nodes.push(node); // the primal node, unchanged
    const hasVaryingInput = node.inputs.some((x) => x && tangent.has(x));
    if (!hasVaryingInput || !node.outputs.some((o) => o && needed.has(o))) continue;
    const label = node.name || node.opType;
    const rule = tangentRule(node.opType, node.domain);
    if (!rule) {
      const what = isDefaultDomain(node.domain) ? 'no rule for this op' : `no rule for ops of domain '${node.domain}'`;
      throw new MissingTangentRuleError(node.opType, label, what);
    }
    const ctx: RuleContext = {
      node,
      opset: graph.opset,
      b,
      t: (i) => (node.inputs[i] ? tangent.get(node.inputs[i]) : undefined),
      x: (i) => node.inputs[i] ?? '',
      y: (i) => node.outputs[i] ?? '',
      unsupported: (reason) => {
        throw new MissingTangentRuleError(node.opType, label, reason);
      },
    };
    let outs: (string | undefined)[];
    try {
      outs = rule(ctx);
    } catch (e) {
      if (e instanceof OpsetTooOld) throw new MissingTangentRuleError(node.opType, label, e.message);
      throw e;
    }
    node.outputs.forEach((o, i) => {
      const t = outs[i];
      if (o && t) tangent.set(o, t);
    });
  }

  // Outputs: primal value and tangent of each requested tensor.
  const elemTypeOf = (name: string): number =>
    graph.outputs.find((o) => o.name === name)?.elemType ||
    graph.valueInfo.get(name)?.elemType ||
    graph.inputs.find((i) => i.name === name)?.elemType ||
    DataType.FLOAT;
  const graphInputNames = new Set<string>([...dataInputNames, ...Object.values(tangentInputs)]);
  const outputNames = new Set<string>();
  const outputs: ValueInfo[] = [];
  const primalOutputs: Record<string, string> = {};
  const tangentOutputs: Record<string, string> = {};
  const exposeAs = (name: string, base: string): string => {
    // A graph input, an initializer or a tensor already exposed cannot be an output name again.
    if (graphInputNames.has(name) || graph.initializers.has(name) || b.initializers.has(name) || outputNames.has(name)) {
      const out = b.fresh(base);
      b.emit('Identity', [name], [out]);
      return out;
    }
    return name;
  };
  for (const o of options.outputs) {
    const p = exposeAs(o, `${o}__primal`);
    outputNames.add(p);
    outputs.push({ name: p, elemType: elemTypeOf(o) });
    primalOutputs[o] = p;
    const t0 = tangent.get(o) ?? b.zerosLike(o);
    const t = exposeAs(t0, `${o}__tangent`);
    outputNames.add(t);
    outputs.push({ name: t, elemType: DataType.FLOAT });
    tangentOutputs[o] = t;
  }

  const primalInputs: PrimalInputSpec[] = [];
  for (const inp of dataInputs) {
    if (!needed.has(inp.name) && !tangent.has(inp.name)) continue;
    const varying = tangentInputs[inp.name] !== undefined;
    primalInputs.push({ name: inp.name, elemType: inp.elemType || DataType.FLOAT, ...inputDims(inp, varying, options.shapes), varying });
  }

  const tg = new Graph();
  tg.name = `${graph.name}_tangent`;
  tg.opsetImports = graph.opsetImports.map((o) => ({ ...o }));
  tg.irVersion = Math.max(graph.irVersion, 4);
  tg.producerName = 'netmoments';
  tg.inputs = [
    ...primalInputs.map((p) => ({ name: p.name, elemType: p.elemType, shape: p.batched ? [1, ...p.dims] : p.dims })),
    ...primalInputs.filter((p) => p.varying).map((p) => ({ name: tangentInputs[p.name], elemType: DataType.FLOAT, shape: ['k', ...p.dims] })),
  ];
  tg.outputs = outputs;
  tg.nodes = b.nodes;
  tg.initializers = new Map([...graph.initializers, ...b.initializers]);
  tg.prune();
  let bytes: Uint8Array | undefined;
  return {
    get bytes() {
      return (bytes ??= tg.toBytes());
    },
    graph: tg,
    primalInputs,
    tangentInputs,
    primalOutputs,
    tangentOutputs,
    tangentTensors: [...tangent.keys()],
  };
}

/**
 * How to feed a graph input: batched (leading axis 1 or symbolic; dims without it) or, for an input
 * that does not vary and has a fixed leading dimension other than 1 (a weight fed as an input), as
 * it is.
 */
export function inputDims(inp: ValueInfo, varying: boolean, shapes?: ReadonlyMap<string, readonly number[]>): { dims: number[]; batched: boolean } {
  const d0 = inp.shape?.[0];
  if (!varying && inp.shape && inp.shape.length > 0 && typeof d0 === 'number' && d0 !== 1 && inp.shape.every((d) => typeof d === 'number')) {
    return { dims: inp.shape as number[], batched: false };
  }
  return { dims: perSampleDims(inp, shapes), batched: true };
}

/** Per-sample dims of a graph input: its shape without the leading batch axis (1 or symbolic). */
export function perSampleDims(inp: ValueInfo, shapes?: ReadonlyMap<string, readonly number[]>): number[] {
  const known = shapes?.get(inp.name);
  const shape = inp.shape ?? (known ? [...known] : undefined);
  if (!shape || shape.length === 0) {
    throw new NetmomentsError(`input '${inp.name}' has no static shape with a leading batch axis; the tangent model needs one`, {
      code: 'UNSUPPORTED',
    });
  }
  const [batch, ...rest] = shape;
  if (typeof batch === 'number' && batch !== 1) {
    throw new NetmomentsError(`input '${inp.name}' has leading dimension ${batch}, where a batch axis (1 or symbolic) is expected`, {
      code: 'UNSUPPORTED',
    });
  }
  const dims = rest.map((d, i) => (typeof d === 'number' ? d : (known?.[i + 1] ?? Number.NaN)));
  if (dims.some((d) => !Number.isInteger(d) || d <= 0)) {
    throw new NetmomentsError(`input '${inp.name}' has symbolic dimensions besides the batch axis ([${shape.join(', ')}])`, {
      code: 'UNSUPPORTED',
    });
  }
  return dims;
}
