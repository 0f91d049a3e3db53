/** Data I/O: .npy, MNIST idx, PNG, the layout rule, preprocessing and datasets. */
export * from './npy.js';
export { parseIdx, readIdx, readIdxImages, readIdxLabels, encodeIdx, writeIdx, type IdxArray } from './idx.js';
export * from './png.js';
export {
  perInputShape,
  batchLayout,
  inputAt,
  checkInputVector,
  checkCovariance,
  imageGeometry,
  requireImageGeometry,
  pixelIndex,
  pngLayoutFor,
  parseLayoutChoice,
  LAYOUT_CHOICES,
  type ImageGeometry,
  type LayoutChoice,
  type BatchLayout,
  type ModelDim,
} from './layout.js';
export * from './preprocess.js';
export * from './dataset.js';
