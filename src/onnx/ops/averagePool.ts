/** AveragePool is linear: the same pooling (same pads, count_include_pad, ceil_mode) of the tangent. */
import { attrInt, attrInts } from '../graph.js';
import type { AdjointRule, TangentRule } from '../tangent/types.js';
import type { OpDefinition } from './types.js';
import { onlyDataVaries, staticShape, windowGeometry } from './adjointHelpers.js';
import { onlyData } from './tangentChecks.js';

const averagePoolTangent: TangentRule = (c) => [c.b.op('AveragePool', [onlyData(c)], c.b.attrsOf(c.node))];

/** GlobalAveragePool is linear. */
const globalAveragePoolTangent: TangentRule = (c) => [c.b.op('GlobalAveragePool', [onlyData(c)])];

/**
 * AveragePool's adjoint: y_o = sum over window o of x / c_o, so x gets sum over the windows holding
 * it of u_o / c_o: the cotangent divided by the divisors, then a depthwise ConvTranspose with a
 * kernel of ones and the pooling's geometry. c_o is the kernel size, or with count_include_pad = 0
 * and pads the number of input elements the window covers (a Conv of ones over ones). ceil_mode = 1
 * is not covered.
 */
const averagePoolAdjoint: AdjointRule = (c) => {
  onlyDataVaries(c);
  const u = c.ct(0);
  if (!u) return [undefined];
  if (attrInt(c.node, 'ceil_mode', 0) === 1) c.unsupported('ceil_mode = 1');
  const kernel = attrInts(c.node, 'kernel_shape');
  if (!kernel) return c.unsupported('no kernel_shape');
  const g = windowGeometry(c, c.x(0), kernel);
  const channels = staticShape(c, c.x(0))[1];
  const K = kernel.reduce((a, k) => a * k, 1);
  const geometry = { kernel_shape: kernel, strides: g.strides, dilations: g.dilations, pads: g.pads };
  let scaled: string;
  if (attrInt(c.node, 'count_include_pad', 0) === 1 || g.pads.every((p) => p === 0)) {
    scaled = c.b.op('Mul', [u, c.b.scalar(1 / K)]);
  } else {
    const S = g.spatial.reduce((a, d) => a * d, 1);
    const count = c.b.op(
      'Conv',
      [c.b.floats(new Array<number>(S).fill(1), [1, 1, ...g.spatial]), c.b.floats(new Array<number>(K).fill(1), [1, 1, ...kernel])],
      geometry,
    );
    scaled = c.b.op('Div', [u, count]);
  }
  const ones = c.b.floats(new Array<number>(channels * K).fill(1), [channels, 1, ...kernel]);
  const attrs = { ...geometry, group: channels, output_padding: g.outputPadding.some((p) => p !== 0) ? g.outputPadding : undefined };
  return [c.b.op('ConvTranspose', [scaled, ones], attrs)];
};

/** GlobalAveragePool's adjoint: u / (H W) spread over every spatial position. */
const globalAveragePoolAdjoint: AdjointRule = (c) => {
  onlyDataVaries(c);
  const u = c.ct(0);
  if (!u) return [undefined];
  const S = staticShape(c, c.x(0))
    .slice(2)
    .reduce((a, d) => a * d, 1);
  c.b.requireOpset(8, 'Expand');
  return [c.b.op('Expand', [c.b.op('Mul', [u, c.b.scalar(1 / S)]), c.b.batchShape(c.x(0))])];
};

export const averagePool: OpDefinition = { tangent: averagePoolTangent, adjoint: averagePoolAdjoint };
export const globalAveragePool: OpDefinition = { tangent: globalAveragePoolTangent, adjoint: globalAveragePoolAdjoint };
