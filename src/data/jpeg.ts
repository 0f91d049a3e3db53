/**
 * JPEG images (baseline and progressive, through jpeg-js) as pixel values x = v / 255 in [0, 1].
 * Grayscale JPEGs (one component) are 1 channel, YCbCr and CMYK ones 3 (RGB, as jpeg-js converts
 * them). The EXIF orientation is not applied: pixels are read as stored.
 */
import jpeg from 'jpeg-js';
import { NetmomentsError } from '../errors.js';
import type { RawImage } from './image.js';

export function isJpeg(bytes: Uint8Array): boolean {
  return bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff;
}

/** Start-of-frame markers (SOF0..SOF15 less DHT 0xC4, JPG 0xC8 and DAC 0xCC): they carry the component count. */
function isStartOfFrame(marker: number): boolean {
  return marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
}

/**
 * The number of colour components the frame header declares (1 for grayscale), found by walking
 * the marker segments before the first scan; undefined when the header cannot be walked.
 */
function componentCount(bytes: Uint8Array): number | undefined {
  let pos = 2;
  while (pos + 4 <= bytes.length) {
    if (bytes[pos] !== 0xff) return undefined;
    const marker = bytes[pos + 1];
    if (marker === 0xff) {
      pos++; // fill byte
      continue;
    }
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd8)) {
      pos += 2; // markers without a length
      continue;
    }
    const length = (bytes[pos + 2] << 8) | bytes[pos + 3];
    if (isStartOfFrame(marker)) return pos + 9 < bytes.length ? bytes[pos + 9] : undefined;
    if (marker === 0xda) return undefined; // a scan before any frame header
    pos += 2 + length;
  }
  return undefined;
}

/** Decode JPEG bytes to pixel values x in [0, 1] (module comment); `file` names it in error messages. */
export function decodeJpegPixels(bytes: Uint8Array, file?: string): RawImage {
  if (!isJpeg(bytes)) throw new NetmomentsError('not a JPEG file (bad signature)', { file });
  let img: { width: number; height: number; data: Uint8Array };
  try {
    img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false });
  } catch (e) {
    throw new NetmomentsError(`cannot decode the JPEG: ${(e as Error).message}`, { file, cause: e });
  }
  const { width, height, data } = img;
  if (!(width > 0 && height > 0) || data.length !== 3 * width * height) {
    throw new NetmomentsError(`cannot decode the JPEG: ${width}x${height} pixels from ${data.length} samples`, { file });
  }
  const channels = componentCount(bytes) === 1 ? 1 : 3;
  const hw = width * height;
  const x = new Float64Array(channels * hw);
  // jpeg-js gives 3 samples per pixel (R = G = B for grayscale)
  for (let q = 0; q < hw; q++) for (let c = 0; c < channels; c++) x[q * channels + c] = data[3 * q + c] / 255;
  return { format: 'JPEG', width, height, channels, depth: 8, x };
}
