/**
 * BatchNormalization in inference mode: y = scale (x - mean) / sqrt(var + eps) + B, so the tangent
 * is scale / sqrt(var + eps) * T per channel: the same op with B and mean set to zero (which keeps
 * the op's own rank handling, epsilon and spatial attribute).
 */
import { attrInt } from '../graph.js';
import type { RuleContext, TangentRule } from '../tangent/types.js';
import type { OpDefinition } from './types.js';
import { selfAdjoint } from './adjointHelpers.js';
import { onlyData } from './tangentChecks.js';

function zerosLikeParam(c: RuleContext, name: string): string {
  const v = c.b.constantValue(name);
  return v ? c.b.zerosInitializer(v) : c.b.op('Mul', [name, c.b.scalar(0)]);
}

const batchNormalizationTangent: TangentRule = (c) => {
  const t = onlyData(c, 'the data input (scale, bias, mean and variance must not vary)');
  if (c.opset >= 14 && attrInt(c.node, 'training_mode', 0) !== 0) c.unsupported('training_mode = 1 (only inference mode is linearizable)');
  if (c.opset < 7 && attrInt(c.node, 'is_test', 0) === 0 && c.node.outputs.filter((o) => o).length > 1) {
    c.unsupported('is_test = 0 with training outputs (only inference mode is linearizable)');
  }
  const inputs = [t, c.x(1), zerosLikeParam(c, c.x(2)), zerosLikeParam(c, c.x(3)), c.x(4)];
  return [c.b.op('BatchNormalization', inputs, c.b.attrsOf(c.node, ['training_mode'])), ...c.node.outputs.slice(1).map(() => undefined)];
};

export const batchNormalization: OpDefinition = { tangent: batchNormalizationTangent, adjoint: selfAdjoint(batchNormalizationTangent) };
