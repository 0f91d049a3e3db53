/**
 * Unit-wise ops whose derivative is a function of the primal input x or output y (the smooth
 * activations, and HardSigmoid / HardSwish, whose derivative jumps at their corners): the tangent
 * is T * f'(x), the adjoint the same (elementwise, self-adjoint). ONNX's definitions, attributes
 * at their defaults when absent. At HardSigmoid's corners the slope is that of the open interval
 * inside (0 at the corner itself), as Clip's.
 *   Exp: y.  Erf: 2 / sqrt(pi) exp(-x^2).  Softplus: sigmoid(x).  Sin: cos x.  Cos: -sin x.
 *   Elu: 1 for x > 0, else y + alpha (= alpha e^x).  Selu: gamma for x > 0, else y + gamma alpha.
 *   Celu: 1 for x > 0, else y / alpha + 1 (= e^(x / alpha)).  Softsign: 1 / (1 + |x|)^2.
 *   HardSigmoid: alpha where 0 < alpha x + beta < 1, else 0.
 *   HardSwish (x HardSigmoid_(1/6, 1/2)(x)): HardSigmoid(x) + x / 6 where |x| < 3.
 *   Mish (x tanh(softplus x)): tanh(sp) + x (1 - tanh(sp)^2) sigmoid(x).
 *   Gelu: Phi(x) + x phi(x); with approximate = 'tanh', u = sqrt(2 / pi) (x + 0.044715 x^3):
 *   (1 + tanh u) / 2 + x (1 - tanh(u)^2) sqrt(2 / pi) (1 + 3 * 0.044715 x^2) / 2.
 */
import { attrFloat, attrString } from '../graph.js';
import type { RuleContext, TangentRule } from '../tangent/types.js';
import type { OpDefinition } from './types.js';
import { selfAdjoint } from './adjointHelpers.js';
import { onlyData } from './tangentChecks.js';

/** ONNX's Selu defaults (float32). */
const SELU_ALPHA = 1.67326319217681884765625;
const SELU_GAMMA = 1.05070102214813232421875;

/** A unit-wise op's definition from its derivative's graph (primal input x = c.x(0), output y = c.y(0)). */
function unitwise(derivative: (c: RuleContext, x: string, y: string) => string): OpDefinition {
  const tangent: TangentRule = (c) => {
    const t = onlyData(c);
    return [c.b.op('Mul', [t, derivative(c, c.x(0), c.y(0))])];
  };
  return { tangent, adjoint: selfAdjoint(tangent), smooth: true };
}

/** m a + (1 - m) b for a float mask m. */
function select(c: RuleContext, m: string, a: string, b: string): string {
  return c.b.op('Add', [c.b.op('Mul', [m, a]), c.b.op('Mul', [c.b.op('Sub', [c.b.scalar(1), m]), b])]);
}

export const exp = unitwise((_c, _x, y) => y);
export const erf = unitwise((c, x) => c.b.op('Mul', [c.b.scalar(2 / Math.sqrt(Math.PI)), c.b.op('Exp', [c.b.op('Neg', [c.b.op('Mul', [x, x])])])]));
export const softplus = unitwise((c, x) => c.b.op('Sigmoid', [x]));
export const sin = unitwise((c, x) => c.b.op('Cos', [x]));
export const cos = unitwise((c, x) => c.b.op('Neg', [c.b.op('Sin', [x])]));
export const elu = unitwise((c, x, y) => select(c, c.b.positiveMask(x), c.b.scalar(1), c.b.op('Add', [y, c.b.scalar(attrFloat(c.node, 'alpha', 1))])));
export const selu = unitwise((c, x, y) => {
  const alpha = attrFloat(c.node, 'alpha', SELU_ALPHA);
  const gamma = attrFloat(c.node, 'gamma', SELU_GAMMA);
  return select(c, c.b.positiveMask(x), c.b.scalar(gamma), c.b.op('Add', [y, c.b.scalar(gamma * alpha)]));
});
export const celu = unitwise((c, x, y) => {
  const alpha = attrFloat(c.node, 'alpha', 1);
  return select(c, c.b.positiveMask(x), c.b.scalar(1), c.b.op('Add', [c.b.op('Mul', [y, c.b.scalar(1 / alpha)]), c.b.scalar(1)]));
});
export const softsign = unitwise((c, x) => {
  const s = c.b.op('Add', [c.b.scalar(1), c.b.op('Abs', [x])]);
  return c.b.op('Div', [c.b.scalar(1), c.b.op('Mul', [s, s])]);
});

/** alpha where 0 < alpha x + beta < 1, else 0. */
function hardSigmoidSlope(c: RuleContext, x: string, alpha: number, beta: number): string {
  const z = c.b.op('Add', [c.b.op('Mul', [x, c.b.scalar(alpha)]), c.b.scalar(beta)]);
  const inside = c.b.op('Mul', [c.b.positiveMask(z), c.b.floatMask(c.b.op('Less', [z, c.b.scalar(1)]))]);
  return c.b.op('Mul', [inside, c.b.scalar(alpha)]);
}

/** HardSigmoid is piecewise linear: not curved, with unit kinks where alpha x + beta crosses 0 and 1. */
export const hardSigmoid: OpDefinition = {
  ...unitwise((c, x) => hardSigmoidSlope(c, x, attrFloat(c.node, 'alpha', 0.2), attrFloat(c.node, 'beta', 0.5))),
  smooth: undefined,
  kinks: (_graph, node) => {
    const alpha = attrFloat(node, 'alpha', 0.2);
    const beta = attrFloat(node, 'beta', 0.5);
    return alpha === 0 ? undefined : { kind: 'unit', at: [-beta / alpha, (1 - beta) / alpha].sort((a, b) => a - b) };
  },
};
export const hardSwish = unitwise((c, x) => {
  const hs = c.b.op('HardSigmoid', [x], { alpha: 1 / 6, beta: 0.5 }, ['alpha', 'beta']);
  return c.b.op('Add', [hs, c.b.op('Mul', [x, hardSigmoidSlope(c, x, 1 / 6, 0.5)])]);
});
export const mish = unitwise((c, x) => {
  const th = c.b.op('Tanh', [c.b.op('Softplus', [x])]);
  const sech2 = c.b.op('Sub', [c.b.scalar(1), c.b.op('Mul', [th, th])]);
  return c.b.op('Add', [th, c.b.op('Mul', [c.b.op('Mul', [x, sech2]), c.b.op('Sigmoid', [x])])]);
});
export const gelu = unitwise((c, x) => {
  const half = c.b.scalar(0.5);
  if (attrString(c.node, 'approximate', 'none') === 'tanh') {
    const k = Math.sqrt(2 / Math.PI);
    const x2 = c.b.op('Mul', [x, x]);
    const u = c.b.op('Mul', [c.b.scalar(k), c.b.op('Add', [x, c.b.op('Mul', [c.b.scalar(0.044715), c.b.op('Mul', [x2, x])])])]);
    const th = c.b.op('Tanh', [u]);
    const du = c.b.op('Mul', [c.b.scalar(k), c.b.op('Add', [c.b.scalar(1), c.b.op('Mul', [c.b.scalar(3 * 0.044715), x2])])]);
    const sech2 = c.b.op('Sub', [c.b.scalar(1), c.b.op('Mul', [th, th])]);
    return c.b.op('Add', [c.b.op('Mul', [half, c.b.op('Add', [c.b.scalar(1), th])]), c.b.op('Mul', [half, c.b.op('Mul', [x, c.b.op('Mul', [sech2, du])])])]);
  }
  const Phi = c.b.op('Mul', [half, c.b.op('Add', [c.b.scalar(1), c.b.op('Erf', [c.b.op('Mul', [x, c.b.scalar(Math.SQRT1_2)])])])]);
  const phi = c.b.op('Mul', [c.b.scalar(1 / Math.sqrt(2 * Math.PI)), c.b.op('Exp', [c.b.op('Mul', [c.b.scalar(-0.5), c.b.op('Mul', [x, x])])])]);
  return c.b.op('Add', [Phi, c.b.op('Mul', [x, phi])]);
});
