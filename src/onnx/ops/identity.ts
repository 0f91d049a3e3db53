/** Identity, and Dropout in inference mode: the tangent passes through. */
import { attrInt } from '../graph.js';
import type { TangentRule } from '../tangent/types.js';
import type { OpDefinition } from './types.js';
import { selfAdjoint } from './adjointHelpers.js';
import { onlyData } from './tangentChecks.js';

const identityTangent: TangentRule = (c) => [onlyData(c)];

const dropoutTangent: TangentRule = (c) => {
  const t = onlyData(c);
  if (c.opset >= 12 && c.x(2)) {
    const mode = c.b.constantInts(c.x(2));
    if (!mode || mode[0] !== 0) c.unsupported('training_mode is not a constant false');
  }
  if (c.opset < 7 && attrInt(c.node, 'is_test', 0) === 0 && c.node.outputs.filter((o) => o).length > 1) {
    c.unsupported('is_test = 0 with a mask output (training mode)');
  }
  return [t, ...c.node.outputs.slice(1).map(() => undefined)];
};

export const identity: OpDefinition = { tangent: identityTangent, adjoint: selfAdjoint(identityTangent) };
export const dropout: OpDefinition = { tangent: dropoutTangent, adjoint: selfAdjoint(dropoutTangent) };
