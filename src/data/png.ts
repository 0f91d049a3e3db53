/**
 * PNG images (through pngjs) as float arrays in model units.
 *
 * Preprocessing: a pixel value v of bit depth b is first mapped to x = v / (2^b - 1) in [0, 1]
 * (x = v / 255 for 8-bit images and for palette images), then to model units as image.ts says
 * (x * scale + offset, per channel with a mean and std). The bundled LeNet takes pixel - 127.5,
 * i.e. scale 255, offset -127.5.
 *
 * Colour types: grayscale (1 channel), grayscale+alpha (1 channel, alpha dropped), RGB and palette
 * (3 channels), RGBA (3 channels, alpha dropped). Transparency (tRNS) is ignored: the colour
 * values are read as stored. Layout: channels-first [C, H, W] by default, or channels-last [H, W, C].
 */
import { PNG } from 'pngjs';
import { NetmomentsError } from '../errors.js';
import { readFileOrFail, writeFileAtomic } from '../util/files.js';
import { imageToModel, type ImageReadOptions, type ModelImage, type RawImage } from './image.js';
import type { ImageLayout } from './layout.js';

export type { ImageLayout };
export type PngReadOptions = ImageReadOptions;
export type PngImage = ModelImage;

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

/** Decode PNG bytes to pixel values x in [0, 1] (module comment); `file` names it in error messages. */
export function decodePngPixels(bytes: Uint8Array, file?: string): RawImage {
  if (!isPng(bytes)) throw new NetmomentsError('not a PNG file (bad signature)', { file });
  let png: { width: number; height: number; depth: number; colorType: number; data: ArrayLike<number> };
  try {
    const buf = Buffer.from(dropChunks(bytes, ['tRNS']));
    png = PNG.sync.read(buf, { skipRescale: true }) as unknown as typeof png;
  } catch (e) {
    throw new NetmomentsError(`cannot decode the PNG: ${(e as Error).message}`, { file, cause: e });
  }
  const { width, height, depth, colorType } = png;
  const channels = colorType === 0 || colorType === 4 ? 1 : 3;
  // pngjs expands everything to 4 samples per pixel (palette to 8-bit RGBA); with skipRescale the
  // samples keep the file's bit depth.
  const maxval = colorType === 3 ? 255 : 2 ** depth - 1;
  const hw = width * height;
  const x = new Float64Array(channels * hw);
  const src = png.data;
  for (let p = 0; p < hw; p++) for (let c = 0; c < channels; c++) x[p * channels + c] = src[4 * p + c] / maxval;
  return { format: 'PNG', width, height, channels, depth, x };
}

/** Decode PNG bytes into model units; `file` names it in error messages. */
export function decodePng(bytes: Uint8Array, options: PngReadOptions = {}, file?: string): PngImage {
  return imageToModel(decodePngPixels(bytes, file), options, file);
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
