/**
 * netmoments as a library: the API the CLI commands use too.
 *
 *   import { loadModel, linearize, analyze } from 'netmoments';
 *   const model = loadModel('lenet.onnx');
 *   const report = await analyze(model, x, 1, { noise: { kind: 'isotropic', sigma: 8 }, relu: 2 });
 */
export { NetmomentsError, type ErrorCode } from './errors.js';
export { loadModel, loadModelBytes, type LoadedModel } from './onnx/load.js';
export { Graph, type GraphNode, type ValueInfo } from './onnx/graph.js';
export { makeBatchDynamic } from './onnx/batch.js';
export { splitModel, splitModelAt, type SplitResult } from './onnx/split.js';
export { resolveRelu, splitPoints, resolveSplitPoint, type SplitPoint } from './onnx/splitpoint.js';
export { Linearizer, type LinearizerOptions, type PointLinearization, type AffineSurrogate, type LayerFlips } from './linearize/linearizer.js';
export { createJacobianEngine, JacobianEngine, type JacobianMode } from './linearize/jacobian.js';
export { analyze, Analyzer, type AnalyzeOptions, type AnalyzeReport, type AnalyzeResult, type VarianceMode } from './analyze.js';
export { chooseMethod, PropagateEngine, type Method, type MethodChoice, type MethodDecision } from './method.js';
export { ModelEvaluator } from './linearize/evaluator.js';
export {
  noiseFactor,
  validateNoise,
  windowIndices,
  parseWindow,
  type Noise,
  type NoiseCovariance,
  type NoiseFactor,
  type NoiseSpec,
  type InputWindow,
} from './noise.js';
export * from './moments/index.js';
export { surrogateMoments, type Surrogate } from './moments/surrogate.js';
export * from './data/index.js';
export {
  runReport,
  mergeReports,
  parseLinearize,
  parseShard,
  parseSigmaList,
  runSweep,
  type LinearizeSpec,
  type ReportOptions,
  type ReportResult,
} from './dataset/index.js';
export type { ReportHeader, ReportSummary, SampleRecord } from './report/summary.js';
export { sharedOrtLinearAlgebra, OrtLinearAlgebra } from './runtime/linalg.js';

import { Linearizer, type AffineSurrogate, type LinearizerOptions } from './linearize/linearizer.js';
import type { LoadedModel } from './onnx/load.js';

/**
 * The two-stage linearization at `point`: g(x) ~ B relu(A x + c1) + D x + c2 with A [p, n],
 * B [d, p], D [d, n] (only when tensors skip the cut), row-major float64.
 */
export async function linearize(
  model: LoadedModel,
  point: Float32Array,
  options: LinearizerOptions = {},
): Promise<AffineSurrogate & Pick<Linearizer, 'split' | 'skip' | 'input' | 'output'>> {
  const lin = await Linearizer.create(model, { ...options, flips: false });
  try {
    const s = await lin.surrogate(point);
    return { ...s, split: lin.split, skip: lin.skip, input: lin.input, output: lin.output };
  } finally {
    await lin.release();
  }
}
export * from './experiments/index.js';
// What the commands call besides the experiments: the model description, the input readers and the experiments' report files.
export {
  inspectGraph,
  inspectModel,
  inspectTensorInfo,
  parameterCount,
  unsupportedOps,
  type InspectReport,
  type InspectRelu,
  type TensorSummary,
} from './onnx/describe.js';
export {
  openModelInputs,
  inputPreprocessing,
  inputRange,
  requireInputRange,
  displayPreprocessing,
  type ModelInputOptions,
  type InputPreprocessingOptions,
} from './data/inputs.js';
export { readInputVector, readCovariance, readPerturbation, parseLinearizationPoint, isUint8Npy } from './data/vectors.js';
export { formatInspect } from './report/inspect.js';
export { tightnessFiles, tightnessPlots, tightnessSummary, runsCsv, type TightnessRunInfo } from './report/tightness.js';
export { sensitivityFiles, sensitivitySummary, type SensitivityRunInfo } from './report/sensitivity.js';
export { foolingJson, foolingCsv, foolingSummary, type FoolingRunInfo } from './report/fooling.js';
export {
  attackFiles,
  universalFiles,
  attackSummary,
  universalSummary,
  pictureGeometry,
  type AttackPictures,
  type AttackRunInfo,
  type Display,
} from './report/attack.js';
