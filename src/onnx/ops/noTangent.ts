/**
 * Ops whose outputs carry no tangent: integer shape computations (Shape, Size, ConstantOfShape,
 * Constant), comparisons and index computations (bool/int outputs), and piecewise-constant ops
 * (Floor, Ceil, Round, Sign: derivative 0 almost everywhere).
 */
import type { TangentRule } from '../tangent/types.js';
import type { OpDefinition } from './types.js';

const noTangentRule: TangentRule = (c) => c.node.outputs.map(() => undefined);

export const NO_TANGENT_OPS = [
  'Shape',
  'Size',
  'Constant',
  'ConstantOfShape',
  'Range',
  'EyeLike',
  'Greater',
  'GreaterOrEqual',
  'Less',
  'LessOrEqual',
  'Equal',
  'Not',
  'And',
  'Or',
  'Xor',
  'IsNaN',
  'IsInf',
  'ArgMax',
  'ArgMin',
  'NonZero',
  'Floor',
  'Ceil',
  'Round',
  'Sign',
];

export const noTangent: OpDefinition = { tangent: noTangentRule };
