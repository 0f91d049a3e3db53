/** Moment propagation through every layer (issue 13). */
export {
  createPropagator,
  inputMoments,
  propagationSupport,
  type InputNoise,
  type PropagatedMoments,
  type Propagator,
  type PropagatorOptions,
} from './propagator.js';
export {
  AFFINE_OPS,
  applyMaxPool,
  applyUnitRule,
  hasMomentRule,
  isMonotoneUnit,
  maxPoolWindows,
  unitRule,
  varianceNodes,
  type TensorMoments,
  type UnitMoments,
} from './rules/index.js';
