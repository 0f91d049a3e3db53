/** An image file's bytes, PNG or JPEG by their signature, to pixels (image.ts) or model units. */
import { NetmomentsError } from '../errors.js';
import { imageToModel, type ImageReadOptions, type ModelImage, type RawImage } from './image.js';
import { decodeJpegPixels, isJpeg } from './jpeg.js';
import { decodePngPixels, isPng } from './png.js';

/** Is this a PNG or a JPEG (by its first bytes)? */
export function isImage(bytes: Uint8Array): boolean {
  return isPng(bytes) || isJpeg(bytes);
}

/** The file name extensions read as images (lower case). */
export const IMAGE_EXTENSIONS = ['.png', '.jpg', '.jpeg'] as const;

export function hasImageExtension(name: string): boolean {
  const lower = name.toLowerCase();
  return IMAGE_EXTENSIONS.some((e) => lower.endsWith(e));
}

/** Decode a PNG or JPEG to pixel values in [0, 1]; `file` names it in error messages. */
export function decodeImagePixels(bytes: Uint8Array, file?: string): RawImage {
  if (isPng(bytes)) return decodePngPixels(bytes, file);
  if (isJpeg(bytes)) return decodeJpegPixels(bytes, file);
  throw new NetmomentsError('not a PNG or JPEG file (unknown signature)', { file });
}

/** Decode a PNG or JPEG into model units (image.ts). */
export function decodeImage(bytes: Uint8Array, options: ImageReadOptions = {}, file?: string): ModelImage {
  return imageToModel(decodeImagePixels(bytes, file), options, file);
}
