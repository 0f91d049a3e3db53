/**
 * PNG images (through pngjs) as float arrays in model units.
 *
 * Preprocessing: a pixel value v of bit depth b is first mapped to x = v / (2^b - 1) in [0, 1]
 * (x = v / 255 for 8-bit images and for palette images), then to model units x * scale + offset.
 * The bundled LeNet takes pixel - 127.5, i.e. scale 255, offset -127.5.
 *
 * Colour types: grayscale (1 channel), grayscale+alpha (1 channel, alpha dropped), RGB and palette
 * (3 channels), RGBA (3 channels, alpha dropped). Transparency (tRNS) is ignored: the colour
 * values are read as stored. Layout: channels-first [C, H, W] by default, or channels-last [H, W, C].
 */
import { PNG } from 'pngjs';
import { NetmomentsError } from '../errors.js';
import { readFileOrFail, writeFileAtomic } from '../util/files.js';
import type { ImageLayout } from './layout.js';
import type { Preprocessing } from './preprocess.js';

export type { ImageLayout };

export interface PngReadOptions extends Partial<Preprocessing> {
  /** 'chw' (default): [C, H, W]; 'hwc': [H, W, C]. */
  layout?: ImageLayout;
  /** Force a channel count: 3 replicates a grayscale image; 1 on a colour image is an error. */
  channels?: 1 | 3;
}

export interface PngImage {
  data: Float32Array;
  shape: number[];
  width: number;
  height: number;
  channels: number;
  /** Bit depth of the file (1, 2, 4, 8 or 16). */
  depth: number;
}

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

export function isPng(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && PNG_SIGNATURE.every((b, i) => bytes[i] === b);
}

/** Drop the named ancillary chunks (keeps the file valid: each chunk carries its own CRC). */
function dropChunks(bytes: Uint8Array, names: string[]): Uint8Array {
  const parts: Uint8Array[] = [bytes.subarray(0, 8)];
  let pos = 8;
  let dropped = false;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  while (pos + 12 <= bytes.length) {
    const len = view.getUint32(pos, false);
    const type = String.fromCharCode(bytes[pos + 4], bytes[pos + 5], bytes[pos + 6], bytes[pos + 7]);
    const end = pos + 12 + len;
    if (end > bytes.length) return bytes; // let the decoder report the truncation
    if (names.includes(type)) dropped = true;
    else parts.push(bytes.subarray(pos, end));
    pos = end;
  }
  if (!dropped) return bytes;
  if (pos < bytes.length) parts.push(bytes.subarray(pos));
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Decode PNG bytes; `file` names it in error messages. */
export function decodePng(bytes: Uint8Array, options: PngReadOptions = {}, file?: string): PngImage {
  if (!isPng(bytes)) throw new NetmomentsError('not a PNG file (bad signature)', { file });
  let png: { width: number; height: number; depth: number; colorType: number; data: ArrayLike<number> };
  try {
    const buf = Buffer.from(dropChunks(bytes, ['tRNS']));
    png = PNG.sync.read(buf, { skipRescale: true }) as unknown as typeof png;
  } catch (e) {
    throw new NetmomentsError(`cannot decode the PNG: ${(e as Error).message}`, { file, cause: e });
  }
  const { width, height, depth, colorType } = png;
  const gray = colorType === 0 || colorType === 4;
  const sourceChannels = gray ? 1 : 3;
  let channels = sourceChannels;
  if (options.channels !== undefined) {
    if (options.channels === 1 && !gray) {
      throw new NetmomentsError('the model expects 1 channel (grayscale) but the PNG is a colour image', { file });
    }
    channels = options.channels;
  }
  // pngjs expands everything to 4 samples per pixel (palette to 8-bit RGBA); with skipRescale the
  // samples keep the file's bit depth.
  const maxval = colorType === 3 ? 255 : 2 ** depth - 1;
  const scale = options.scale ?? 1;
  const offset = options.offset ?? 0;
  const hw = width * height;
  const out = new Float32Array(channels * hw);
  const chw = (options.layout ?? 'chw') === 'chw';
  const src = png.data;
  for (let p = 0; p < hw; p++) {
    for (let c = 0; c < channels; c++) {
      const v = src[4 * p + (sourceChannels === 1 ? 0 : c)];
      const x = v / maxval;
      out[chw ? c * hw + p : p * channels + c] = x * scale + offset;
    }
  }
  return {
    data: out,
    shape: chw ? [channels, height, width] : [height, width, channels],
    width,
    height,
    channels,
    depth,
  };
}

export function readPng(path: string, options: PngReadOptions = {}): PngImage {
  return decodePng(readFileOrFail(path), options, path);
}

/** Encode 8-bit grayscale pixels (row-major, height x width) as a PNG. */
export function encodeGrayPng(pixels: Uint8Array, width: number, height: number): Uint8Array {
  if (pixels.length !== width * height) throw new Error(`encodeGrayPng: ${pixels.length} pixels for ${width}x${height}`);
  return encodePng(pixels, width, height, 0);
}

/** Encode 8-bit RGB pixels (row-major, interleaved) as a PNG. */
export function encodeRgbPng(pixels: Uint8Array, width: number, height: number): Uint8Array {
  if (pixels.length !== 3 * width * height) throw new Error(`encodeRgbPng: ${pixels.length} samples for ${width}x${height}x3`);
  return encodePng(pixels, width, height, 2);
}

function encodePng(pixels: Uint8Array, width: number, height: number, colorType: 0 | 2): Uint8Array {
  const png = { width, height, data: Buffer.from(pixels) } as unknown as PNG;
  return new Uint8Array(PNG.sync.write(png, { colorType, inputColorType: colorType, inputHasAlpha: false, bitDepth: 8, deflateLevel: 9 }));
}

export function writeGrayPng(path: string, pixels: Uint8Array, width: number, height: number): void {
  writeFileAtomic(path, encodeGrayPng(pixels, width, height));
}
