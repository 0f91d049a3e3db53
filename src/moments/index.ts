/**
 * The moments engine: closed-form Gaussian moments of (Affine, ReLU, Affine) networks with the
 * exact variance beyond the paper's Theorem 2, Monte Carlo ground truth, gradients of the mean and
 * class probabilities. No ONNX model logic lives here; onnxruntime enters only through the
 * LinearAlgebra interface (src/runtime/linalg.ts implements it on onnxruntime's float64 Gemm).
 */
export { INV_SQRT_2PI, Phi, Phi2, PhiInv, SQRT_2PI, millsComplement, phi } from './special.js';
export { clopperPearsonInterval, clopperPearsonLower, clopperPearsonUpper, inverseRegularizedBeta, logBeta, logGamma, regularizedBeta } from './beta.js';
export {
  clampRho,
  pairCorrectionClosedForm,
  pairCorrectionQuadrature,
  reluChi,
  reluCovariance,
  reluCrossMoment,
  reluCrossMomentPaper,
  reluMean,
  reluPairCorrection,
  reluPairCorrectionPaper,
  reluPsi,
  reluSecondMoment,
  reluVariance,
  reluVarianceCorrection,
  rosenbaumStd,
} from './relu.js';
export { type GemmOptions, type LinearAlgebra, gemmSync, jsLinearAlgebra, matTVec, matVec, rowDots, transpose } from './linalg.js';
export {
  type CovarianceForm,
  type Matrix,
  type MomentsOptions,
  type NetworkMoments,
  type Noise,
  type NoiseCovariance,
  type NoiseFactors,
  type PanelSource,
  type ShallowNetwork,
  type UnitStateCode,
  type UnitStats,
  UnitState,
  expectedFlips,
  factorForm,
  foldPairPanels,
  foldPairs,
  momentsFromForm,
  networkMean,
  networkMoments,
  noiseFactors,
  pairPanel,
  pairPanelRows,
  preActivationMean,
  standardForm,
  standardMoments,
  unitStates,
  unitStatistics,
  validateNetwork,
  validateNoise,
} from './network.js';
export {
  type Surrogate,
  type SurrogateMomentsOptions,
  type SurrogateOffset,
  projectSurrogate,
  projectedMoments,
  surrogateMoments,
  surrogateNetwork,
  surrogateOffsets,
  surrogateSizes,
  topOffset,
} from './surrogate.js';
export {
  type BatchFunction,
  type BatchFunction64,
  type CovarianceFactor,
  type MonteCarloOptions,
  type MonteCarloResult,
  GaussianSampler,
  MomentAccumulator,
  Rng,
  covarianceFactor,
  monteCarloMoments,
  monteCarloMoments64,
} from './montecarlo.js';
export { type MeanGradient, differenceWeights, meanGradient, networkMeanOnly } from './gradients.js';
export { type ClassProbabilities, type ClassProbabilityOptions, cantelliMarginBound, classProbabilities, pivotedCholesky } from './classprob.js';
