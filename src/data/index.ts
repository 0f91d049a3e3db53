/** Data I/O: .npy, MNIST idx, PNG, JPEG, resizing, the layout rule, preprocessing and datasets. */
export * from './npy.js';
export { parseIdx, readIdx, readIdxImages, readIdxLabels, encodeIdx, writeIdx, type IdxArray } from './idx.js';
export * from './png.js';
export { decodeJpegPixels, isJpeg } from './jpeg.js';
export { decodeImage, decodeImagePixels, isImage, IMAGE_EXTENSIONS } from './decode.js';
export { imageToModel, type RawImage, type ImageReadOptions, type ModelImage } from './image.js';
export { axisWeights, resizeInterleaved } from './resize.js';
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
