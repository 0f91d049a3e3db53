/**
 * The op registry moved to src/onnx/ops/registry.ts (one op definition per file there). This module
 * re-exports its tangent lookups until its last importers (src/commands/inspect.ts,
 * test/linearize/jacobian.test.ts) import src/onnx/ops/registry.js directly.
 */
export { hasNoTangent, isLinearizable, linearizableOps, tangentRule } from '../ops/registry.js';
