/**
 * Unit-wise composites. Two kinds of subgraph compute a unit-wise function f(x) of one tensor x
 * without being one op:
 *  - a sum, difference or product of two noisy tensors that are both unit-wise functions of x: Swish / SiLU x * sigmoid(x), GELU as torch exports it before opset 20,
 *    x * (1 + erf(x / sqrt 2)) / 2, Mish x * tanh(softplus(x)), HardSwish x * HardSigmoid(x) before
 *    opset 14. Each operand alone has moments, but they are correlated non-Gaussian functions of the
 *    same units, and no rule on their separate (m, F, r) gives their product's.
 *  - a chain of unit-wise ops: torch's F.relu6 exports as Relu then Clip(0, 6). Op by op, the Clip
 *    would read the Relu's output as a Gaussian of its mean and variance and clip its made-up
 *    negative part again (a 6-layer ReLU6 net at sigma 0.5: means 3.6 sd off, variances 0.39-0.54
 *    of Monte Carlo's; bench/export-corpus.mjs).
 * So the nodes between x and the last one are fused (fuseUnitComposites) into one unit-wise step of
 * x, the Gaussian pre-activation: a chain of piecewise-linear ops (with scalar affine ops between)
 * is composed into one piecewise-linear function, whose moments are exact (piecewiseLinearMoments);
 * anything else is integrated (smoothMoments: E f(x), var f(x), E f'(x) for x ~ N(m, s^2)). The
 * factor passes with E f'(x) like any unit-wise op (Stein's lemma: exact covariance with all that
 * is jointly Gaussian with x).
 *
 * A composite is found from its last node, walking back: a tensor joins when every node reading it
 * is already in the composite and its producer is unit-wise with a scalar function (unitFunction),
 * Identity, Neg, Dropout, or an elementwise binary op (Add, Sub, Mul; Div by a constant; Pow to a
 * whole constant) whose other inputs are scalar constants or in the composite. (Max and Min were
 * rewritten with Relu before: rules/maxmin.ts.) The walk stops at tensors read elsewhere too (x itself, in the first kind: both
 * operands read it). It fuses when what is left is one tensor x, and the composite holds a binary
 * op of two noisy tensors or at least two non-affine ops (a lone Relu after a scalar Add gains
 * nothing); its tensors then all have x's shape (scalar constants of rank <= 1 broadcast without
 * changing it). Otherwise the nodes stay, and propagate has no rule for a product of two noisy
 * tensors (nonAffineUse).
 */
import { graphConstant, type Graph, type GraphNode } from '../../onnx/graph.js';
import { composePiecewiseLinear, type PiecewiseLinear } from '../../moments/piecewise.js';
import { constantScalar, isDefault } from './factor.js';
import { piecewiseLinearOf, unitFunction } from './unit.js';

/** The domain and op type of a fused composite node (never run by onnxruntime). */
export const COMPOSITE_DOMAIN = 'netmoments.propagate';
export const COMPOSITE_OP = 'UnitComposite';

export interface UnitComposite {
  /** The original nodes, in graph order (the binary node last). */
  nodes: GraphNode[];
  /** f(x), evaluated by running the nodes on one number. */
  f: (x: number) => number;
  /** f as one piecewise-linear function, when every node is (a chain of Relu, Clip, scalar Add, ...). */
  piecewiseLinear?: PiecewiseLinear;
  /** e.g. 'Sigmoid*Mul' */
  label: string;
}

const BINARY: Readonly<Record<string, (a: number, b: number) => number>> = {
  Add: (a, b) => a + b,
  Sub: (a, b) => a - b,
  Mul: (a, b) => a * b,
  Div: (a, b) => a / b,
  Pow: (a, b) => a ** b,
};

const PASS: Readonly<Record<string, (a: number) => number>> = {
  Identity: (a) => a,
  Dropout: (a) => a,
  Neg: (a) => -a,
};

/** A scalar constant of rank <= 1 (broadcasting it keeps the other operand's shape), or undefined. */
function scalarConstant(graph: Graph, name: string): number | undefined {
  return (graphConstant(graph, name)?.dims.length ?? 2) <= 1 ? constantScalar(graph, name) : undefined;
}

/** A node that may join a composite: its scalar function, its piecewise-linear form when it has one, and whether it is affine. */
interface Member {
  /** The node's value from its noisy inputs' values, in input order. */
  fn: (args: number[]) => number;
  piecewiseLinear?: PiecewiseLinear;
  affine: boolean;
  /** A binary op of two noisy tensors. */
  product: boolean;
}

const line = (slope: number, intercept = 0): PiecewiseLinear => ({ kinks: [], slopes: [slope], intercepts: [intercept] });

/** The piecewise-linear form of a binary op with one noisy operand (at `at`; Div's is the numerator) and the constant c, or undefined. */
function binaryPiecewiseLinear(op: string, at: number, c: number): PiecewiseLinear | undefined {
  switch (op) {
    case 'Add':
      return line(1, c);
    case 'Sub':
      return at === 0 ? line(1, -c) : line(-1, c);
    case 'Mul':
      return line(c);
    case 'Div':
      return line(1 / c);
    default:
      return undefined;
  }
}

/** The node as a composite member, or undefined when it cannot be one. */
function memberOf(n: GraphNode, graph: Graph, isVariable: (t: string) => boolean): Member | undefined {
  if (!isDefault(n) || n.outputs.filter((o) => o).length !== 1) return undefined;
  const noisy = n.inputs.filter((x) => x && isVariable(x));
  const binary = BINARY[n.opType];
  if (binary) {
    if (n.inputs.length !== 2) return undefined;
    const consts = n.inputs.map((x) => (isVariable(x) ? undefined : scalarConstant(graph, x)));
    if (n.inputs.some((x, i) => !isVariable(x) && consts[i] === undefined)) return undefined;
    // a unit that can be 0 as a divisor, or a power that is not a whole number (or of a noisy
    // exponent), has moments that do not exist or a function undefined for negative units: only
    // constant divisors and non-negative whole exponents of a noisy base
    if (n.opType === 'Div' && consts[1] === undefined) return undefined;
    if (n.opType === 'Pow' && (consts[1] === undefined || !Number.isInteger(consts[1]) || consts[1] < 0)) return undefined;
    // the noisy operands' values come in order; a constant operand keeps its place
    const fn = (args: number[]): number => {
      let k = 0;
      const a = consts[0] ?? args[k++];
      const b = consts[1] ?? args[k++];
      return binary(a, b);
    };
    if (noisy.length === 2) return { fn, affine: false, product: true };
    const at = isVariable(n.inputs[0]) ? 0 : 1;
    const pl = binaryPiecewiseLinear(n.opType, at, consts[1 - at]!);
    const affine = pl !== undefined && pl.kinks.length === 0;
    return { fn, piecewiseLinear: pl, affine, product: false };
  }
  if (noisy.length !== 1 || n.inputs[0] !== noisy[0]) return undefined;
  const pass = PASS[n.opType];
  if (pass) {
    if (n.opType === 'Dropout' && n.inputs.length > 1) return undefined;
    return { fn: (args) => pass(args[0]), piecewiseLinear: line(pass(1)), affine: true, product: false };
  }
  let f: ((x: number) => number) | undefined;
  let pl: PiecewiseLinear | undefined;
  try {
    f = unitFunction(n, graph);
    pl = piecewiseLinearOf(n, graph);
  } catch {
    return undefined; // e.g. a Clip with bounds that are not constants
  }
  if (!f) return undefined;
  return { fn: (args) => f(args[0]), piecewiseLinear: pl, affine: false, product: false };
}

/**
 * Fuse every unit-wise composite of `graph` (sorted; changed in place: each composite's binary
 * node becomes a COMPOSITE_OP node reading x, its other nodes are removed). Returns the
 * composites by the fused node's name.
 */
export function fuseUnitComposites(graph: Graph, isVariable: (t: string) => boolean): Map<string, UnitComposite> {
  const fused = new Map<string, UnitComposite>();
  const outputs = new Set(graph.outputs.map((o) => o.name));
  for (;;) {
    const found = findComposite(graph, isVariable, outputs);
    if (!found) return fused;
    const { members, root } = found;
    const order = graph.nodes.filter((n) => members.has(n));
    const b = order[order.length - 1];
    fused.set(b.name, compile(order, members, root, isVariable));
    graph.nodes = graph.nodes.flatMap((n) =>
      n === b
        ? [{ name: b.name, opType: COMPOSITE_OP, domain: COMPOSITE_DOMAIN, inputs: [root], outputs: [b.outputs[0]], attributes: [] }]
        : members.has(n)
          ? []
          : [n],
    );
  }
}

/**
 * The last composite of the graph (by its last node's order: an outer composite then takes in the
 * inner ones, as GELU's tanh form's x^3 = x * x * x), or undefined.
 */
function findComposite(
  graph: Graph,
  isVariable: (t: string) => boolean,
  outputs: ReadonlySet<string>,
): { members: Map<GraphNode, Member>; root: string } | undefined {
  for (let i = graph.nodes.length - 1; i >= 0; i--) {
    const b = graph.nodes[i];
    const last = memberOf(b, graph, isVariable);
    if (!last || last.affine) continue;
    const members = new Map<GraphNode, Member>([[b, last]]);
    let products = last.product ? 1 : 0;
    let nonAffine = 1;
    const frontier = new Set(b.inputs.filter((x) => x && isVariable(x)));
    for (let grew = true; grew;) {
      grew = false;
      for (const t of [...frontier]) {
        const p = graph.producerOf(t);
        const m = p && !outputs.has(t) ? memberOf(p, graph, isVariable) : undefined;
        if (!p || !m || !graph.consumersOf(t).every((c) => members.has(c))) continue;
        members.set(p, m);
        if (m.product) products++;
        if (!m.affine) nonAffine++;
        frontier.delete(t);
        for (const x of p.inputs) if (x && isVariable(x)) frontier.add(x);
        grew = true;
      }
    }
    if (frontier.size === 1 && (products > 0 || nonAffine >= 2)) return { members, root: [...frontier][0] };
  }
  return undefined;
}

/** f(x) of a composite: its nodes run in order on numbers (x in slot 0, each node's output in the next). */
function compile(order: GraphNode[], found: ReadonlyMap<GraphNode, Member>, root: string, isVariable: (t: string) => boolean): UnitComposite {
  const slot = new Map<string, number>([[root, 0]]);
  const members = order.map((n) => found.get(n)!);
  // a chain of piecewise-linear members (each reads the one before): one piecewise-linear function
  let piecewiseLinear: PiecewiseLinear | undefined = line(1);
  for (const m of members) piecewiseLinear = m.piecewiseLinear && piecewiseLinear ? composePiecewiseLinear(m.piecewiseLinear, piecewiseLinear) : undefined;
  const steps = order.map((n, k) => {
    const fn = members[k].fn;
    const ins = n.inputs.filter((x) => x && isVariable(x)).map((x) => slot.get(x)!);
    slot.set(
      n.outputs.find((o) => o)!,
      k + 1,
    );
    return { fn, ins };
  });
  const v = new Float64Array(order.length + 1);
  const args: number[] = [];
  const f = (x: number): number => {
    v[0] = x;
    for (let k = 0; k < steps.length; k++) {
      const s = steps[k];
      args.length = s.ins.length;
      for (let a = 0; a < s.ins.length; a++) args[a] = v[s.ins[a]];
      v[k + 1] = s.fn(args);
    }
    return v[steps.length];
  };
  return { nodes: order, f, piecewiseLinear, label: order.map((n) => n.opType).join('*') };
}
