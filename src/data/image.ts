/**
 * Decoded images (PNG or JPEG) to model inputs: pixel values x in [0, 1], optionally resized to the
 * model's rows and columns (resize.ts: bilinear when enlarging, area averaging when shrinking),
 * a grayscale image replicated to 3 channels when the model takes 3 (a colour JPEG whose channels
 * are equal everywhere is grayscale and fits a 1-channel model; any other colour image does not),
 * then model units by the
 * preprocessing (preprocess.ts: model = (x - mean[c]) / std[c] * scale + offset), written in the
 * model's layout: channels-first [C, H, W] (default) or channels-last [H, W, C].
 */
import { NetmomentsError } from '../errors.js';
import type { ImageLayout } from './layout.js';
import { channelAffine, isPerChannel, type Preprocessing } from './preprocess.js';
import { resizeInterleaved } from './resize.js';

/** A decoded image: x = pixel / max in [0, 1], interleaved rows x columns x channels. */
export interface RawImage {
  format: 'PNG' | 'JPEG';
  width: number;
  height: number;
  /** 1 (grayscale) or 3 (colour); alpha is dropped. */
  channels: 1 | 3;
  /** Bits per sample in the file (PNG: 1, 2, 4, 8 or 16; JPEG: 8). */
  depth: number;
  x: Float64Array;
}

export interface ImageReadOptions extends Partial<Preprocessing> {
  /** 'chw' (default): [C, H, W]; 'hwc': [H, W, C]. */
  layout?: ImageLayout;
  /** Force a channel count: 3 replicates a grayscale image; 1 on a colour image is an error. */
  channels?: 1 | 3;
  /** Resize to these rows and columns when the image's differ (default: keep the image's size). */
  size?: { height: number; width: number };
}

export interface ModelImage {
  data: Float32Array;
  shape: number[];
  width: number;
  height: number;
  channels: number;
  /** Bit depth of the file. */
  depth: number;
  /** The file's own size when it was resized to width x height. */
  resizedFrom?: { height: number; width: number };
}

/**
 * A colour image whose three channels are equal at every pixel (grayscale stored as RGB, as most
 * JPEG encoders store it) as the 1-channel image it is; any other image unchanged. Used for JPEGs
 * only: a colour PNG is refused by a 1-channel model, as it always was.
 */
function grayStoredAsColour(img: RawImage): RawImage {
  if (img.channels !== 3) return img;
  const hw = img.width * img.height;
  const x = new Float64Array(hw);
  for (let q = 0; q < hw; q++) {
    const r = img.x[3 * q];
    if (img.x[3 * q + 1] !== r || img.x[3 * q + 2] !== r) return img;
    x[q] = r;
  }
  return { ...img, channels: 1, x };
}

/** A raw image in model units (module comment); `file` names it in error messages. */
export function imageToModel(img: RawImage, options: ImageReadOptions = {}, file?: string): ModelImage {
  let channels: number = img.channels;
  if (options.channels !== undefined) {
    if (options.channels === 1 && img.channels !== 1) {
      if (img.format === 'JPEG') img = grayStoredAsColour(img);
      if (img.channels !== 1) {
        throw new NetmomentsError(
          `the model expects 1 channel (grayscale) but the ${img.format} is a colour image (convert it to grayscale first, e.g. PIL's convert('L'))`,
          { file },
        );
      }
    }
    channels = options.channels;
  }
  let { x, width, height } = img;
  let resizedFrom: ModelImage['resizedFrom'];
  const size = options.size;
  if (size && (size.height !== height || size.width !== width)) {
    x = resizeInterleaved(x, height, width, img.channels, size.height, size.width);
    resizedFrom = { height, width };
    ({ height, width } = size);
  }
  const hw = width * height;
  const out = new Float32Array(channels * hw);
  const chw = (options.layout ?? 'chw') === 'chw';
  const src = img.channels;
  const p: Preprocessing = { scale: options.scale ?? 1, offset: options.offset ?? 0, mean: options.mean, std: options.std };
  if (isPerChannel(p)) {
    const { a, b } = channelAffine(p, channels, file);
    for (let q = 0; q < hw; q++) {
      for (let c = 0; c < channels; c++) out[chw ? c * hw + q : q * channels + c] = x[q * src + (src === 1 ? 0 : c)] * a[c] + b[c];
    }
  } else {
    for (let q = 0; q < hw; q++) {
      for (let c = 0; c < channels; c++) out[chw ? c * hw + q : q * channels + c] = x[q * src + (src === 1 ? 0 : c)] * p.scale + p.offset;
    }
  }
  return {
    data: out,
    shape: chw ? [channels, height, width] : [height, width, channels],
    width,
    height,
    channels,
    depth: img.depth,
    ...(resizedFrom ? { resizedFrom } : {}),
  };
}
