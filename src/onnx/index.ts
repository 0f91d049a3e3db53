/** The ONNX model layer: load and check a file, the Graph model, the op registry, shapes, batch rewrite, split points, splitting. */
export * from './graph.js';
export * from './proto.js';
export * from './tensor.js';
export * from './load.js';
export * from './validate.js';
export * from './shapes.js';
export * from './batch.js';
export * from './splitpoint.js';
export * from './split.js';
export * from './ops/registry.js';
export type { Kinks, KinkRule, OpDefinition, TensorDims, UnitKinks, WindowKinks } from './ops/types.js';
export type { PoolWindows } from './ops/poolWindows.js';
