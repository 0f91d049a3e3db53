/** Moment propagation through every layer (issue 13). */
export {
  DEFAULT_HERMITE_COLUMNS,
  DEFAULT_HERMITE_PROBES,
  REVERSE_HERMITE_COLUMNS,
  DEFAULT_RESIDUAL_ROWS,
  REVERSE_ALL_OUTPUTS,
  REVERSE_TOP_OUTPUTS,
  createPropagator,
  inputMoments,
  layoutPropagation,
  type PropagationLayout,
  propagationSupport,
  propagationSummary,
  type InputNoise,
  type PropagatedMoments,
  type Propagator,
  type PropagatorOptions,
} from './propagator.js';
export { propagationMemory, type PropagationMemory, type PropagationMemoryOptions } from './memory.js';
export { CONV_OPS } from './segment.js';
export {
  AFFINE_OPS,
  applyMaxPool,
  applyUnitRule,
  hasMomentRule,
  isMonotoneUnit,
  maxPoolWindows,
  UNIT_OPS,
  unitFunction,
  unitRule,
  varianceNodes,
  type TensorMoments,
  type UnitMoments,
} from './rules/index.js';
