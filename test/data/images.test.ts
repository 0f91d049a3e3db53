/**
 * Images as people have them: JPEG beside PNG (real files written with jpeg-js's encoder), images
 * resized to the model's input (checked against hand-computed bilinear and area values), per-channel
 * mean/std (options and model metadata), and integer .npy files said, never guessed.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import jpeg from 'jpeg-js';
import { afterAll, describe, expect, it } from 'vitest';
import { openDataset } from '../../src/data/dataset.js';
import { decodeImagePixels } from '../../src/data/decode.js';
import { openModelInputs } from '../../src/data/inputs.js';
import { writeNpy } from '../../src/data/npy.js';
import { decodePngPixels, encodeGrayPng, encodeRgbPng } from '../../src/data/png.js';
import { classNamesFromMetadata, normalizationFromMetadata } from '../../src/data/preprocess.js';
import { axisWeights } from '../../src/data/resize.js';
import { NetmomentsError } from '../../src/errors.js';

const LENET = { scale: 255, offset: -127.5 };
const dir = mkdtempSync(join(tmpdir(), 'nm-img-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** digit-0.png's 784 pixels (0..255). */
const digitPixels = Uint8Array.from(decodePngPixels(readFileSync('fixtures/mnist/digit-0.png')).x, (v) => Math.round(v * 255));

/** A JPEG of 8-bit pixels (gray: 1 sample per pixel, else RGB) through jpeg-js's encoder. */
function encodeJpeg(pixels: Uint8Array, width: number, height: number, channels: 1 | 3, quality: number): Uint8Array {
  const rgba = new Uint8Array(width * height * 4);
  for (let q = 0; q < width * height; q++) {
    for (let c = 0; c < 3; c++) rgba[4 * q + c] = pixels[channels === 1 ? q : 3 * q + c];
    rgba[4 * q + 3] = 255;
  }
  return new Uint8Array(jpeg.encode({ data: rgba, width, height }, quality).data);
}

describe('JPEG inputs', () => {
  it('a JPEG of the digit decodes to the PNG values within the JPEG error, as a 1-channel input', () => {
    const file = join(dir, 'digit-0.jpg');
    writeFileSync(file, encodeJpeg(digitPixels, 28, 28, 1, 95));
    const fromJpeg = openDataset(file, { inputShape: [1, 28, 28], preprocessing: LENET });
    const fromPng = openDataset('fixtures/mnist/digit-0.png', { inputShape: [1, 28, 28], preprocessing: LENET });
    const a = fromJpeg.get(0);
    const b = fromPng.get(0);
    expect(fromJpeg.inputShape).toEqual([1, 28, 28]);
    let max = 0;
    let sum = 0;
    for (let i = 0; i < 784; i++) {
      const e = Math.abs(a[i] - b[i]);
      max = Math.max(max, e);
      sum += e;
    }
    // quality 95: at most 6 levels off anywhere, under 1 level on average (measured 6 and 0.72)
    expect(max).toBeLessThanOrEqual(8);
    expect(sum / 784).toBeLessThan(1);
    expect(max).toBeGreaterThan(0); // it is a real JPEG, not the PNG's bytes
  });

  it('a colour JPEG keeps its channels (chw and hwc); a colour image refused by a 1-channel model', () => {
    const rgb = new Uint8Array(8 * 8 * 3);
    for (let q = 0; q < 64; q++) rgb.set([200, 100, 30], 3 * q);
    const file = join(dir, 'flat.jpg');
    writeFileSync(file, encodeJpeg(rgb, 8, 8, 3, 100));
    const raw = decodeImagePixels(readFileSync(file), file);
    expect(raw.format).toBe('JPEG');
    expect(raw.channels).toBe(3);
    const chw = openDataset(file, { inputShape: [3, 8, 8], preprocessing: { scale: 255, offset: 0 } }).get(0);
    for (const [c, v] of [200, 100, 30].entries()) expect(Math.abs(chw[c * 64 + 9] - v)).toBeLessThanOrEqual(2);
    const hwc = openDataset(file, { inputShape: [8, 8, 3], layout: 'hwc', preprocessing: { scale: 255, offset: 0 } }).get(0);
    for (const [c, v] of [200, 100, 30].entries()) expect(Math.abs(hwc[9 * 3 + c] - v)).toBeLessThanOrEqual(2);
    expect(() => openDataset(file, { inputShape: [1, 8, 8] })).toThrow(/expects 1 channel \(grayscale\) but the JPEG is a colour image/);
  });

  it('a truncated JPEG: one line naming the file', () => {
    const file = join(dir, 'cut.jpg');
    writeFileSync(file, encodeJpeg(digitPixels, 28, 28, 1, 90).subarray(0, 200));
    try {
      openDataset(file, { inputShape: [1, 28, 28] }).get(0);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(NetmomentsError);
      expect((e as NetmomentsError).describe()).toMatch(/cut\.jpg: cannot decode the JPEG/);
    }
  });
});

describe('resizing to the model input', () => {
  it('enlarging 2x2 -> 4x4 is bilinear with half-pixel centres (hand-computed)', () => {
    const file = join(dir, 'two.png');
    writeFileSync(file, encodeGrayPng(Uint8Array.from([0, 100, 200, 40]), 2, 2));
    const notes: string[] = [];
    const ds = openDataset(file, { inputShape: [1, 4, 4], preprocessing: { scale: 255, offset: 0 }, onNote: (m) => notes.push(m) });
    const x = ds.get(0);
    // out[0][0]: source (-0.25, -0.25) clamped to pixel (0, 0)
    expect(x[0]).toBeCloseTo(0, 4);
    // out[0][1]: row clamped to 0, column s = 1.5 * 0.5 - 0.5 = 0.25: 0.75 * 0 + 0.25 * 100
    expect(x[1]).toBeCloseTo(25, 4);
    // out[1][1]: (0.25, 0.25): 0.75*0.75*0 + 0.75*0.25*100 + 0.25*0.75*200 + 0.25*0.25*40 = 58.75
    expect(x[5]).toBeCloseTo(58.75, 4);
    // out[2][2]: s = 2.5 * 0.5 - 0.5 = 0.75: 0.25*0.25*0 + 0.25*0.75*100 + 0.75*0.25*200 + 0.75*0.75*40 = 78.75
    expect(x[10]).toBeCloseTo(78.75, 4);
    expect(x[15]).toBeCloseTo(40, 4);
    ds.get(0);
    expect(notes).toHaveLength(1);
    expect(notes[0]).toMatch(
      /resized to it \(bilinear when enlarging, area average when shrinking; stretched, not cropped\), the first being two\.png \(2x2\)/,
    );
  });

  it('shrinking averages areas: 3 -> 2 columns weighs 2/3 and 1/3; 28x28 -> 14x14 averages 2x2 blocks', () => {
    expect(axisWeights(3, 2)).toEqual([
      { index: [0, 1], weight: [2 / 3, 1 / 3] },
      { index: [1, 2], weight: [1 / 3, 2 / 3] },
    ]);
    const file = join(dir, 'row.png');
    writeFileSync(file, encodeGrayPng(Uint8Array.from([30, 60, 90]), 3, 1));
    const row = openDataset(file, { inputShape: [1, 1, 2], preprocessing: { scale: 255, offset: 0 } }).get(0);
    expect(row[0]).toBeCloseTo(40, 4); // 2/3 * 30 + 1/3 * 60
    expect(row[1]).toBeCloseTo(80, 4); // 1/3 * 60 + 2/3 * 90
    const small = openDataset('fixtures/mnist/digit-0.png', { inputShape: [1, 14, 14], preprocessing: { scale: 255, offset: 0 } }).get(0);
    for (const [i, j] of [
      [7, 7],
      [3, 10],
      [10, 4],
    ]) {
      const block =
        (digitPixels[2 * i * 28 + 2 * j] +
          digitPixels[2 * i * 28 + 2 * j + 1] +
          digitPixels[(2 * i + 1) * 28 + 2 * j] +
          digitPixels[(2 * i + 1) * 28 + 2 * j + 1]) /
        4;
      expect(small[i * 14 + j]).toBeCloseTo(block, 3);
    }
  });

  it('a folder of images of several sizes is resized image by image, said once', () => {
    const folder = join(dir, 'sizes');
    mkdirSync(folder);
    writeFileSync(join(folder, 'a.png'), encodeGrayPng(new Uint8Array(4).fill(255), 2, 2));
    writeFileSync(join(folder, 'b.png'), encodeGrayPng(new Uint8Array(36).fill(255), 6, 6));
    writeFileSync(join(folder, 'c.jpg'), encodeJpeg(new Uint8Array(16).fill(255), 4, 4, 1, 100));
    const notes: string[] = [];
    const ds = openDataset(folder, { inputShape: [1, 4, 4], preprocessing: { scale: 1, offset: 0 }, onNote: (m) => notes.push(m) });
    expect(ds.size).toBe(3);
    for (let i = 0; i < 3; i++) for (const v of ds.get(i)) expect(v).toBeCloseTo(1, 2);
    expect(notes).toHaveLength(1);
  });
});

describe('per-channel mean and std', () => {
  const M = [0.485, 0.456, 0.406];
  const S = [0.229, 0.224, 0.225];
  const pixels = [255, 0, 51, 102, 153, 204]; // two RGB pixels
  const expected = (q: number, c: number) => (pixels[3 * q + c] / 255 - M[c]) / S[c];

  it('an RGB PNG: (pixel/255 - mean[c]) / std[c] in both layouts; the same from a uint8 .npy', () => {
    const file = join(dir, 'rgb.png');
    writeFileSync(file, encodeRgbPng(Uint8Array.from(pixels), 2, 1));
    const chw = openDataset(file, { inputShape: [3, 1, 2], preprocessing: { scale: 1, offset: 0, mean: M, std: S } }).get(0);
    const hwc = openDataset(file, { inputShape: [1, 2, 3], layout: 'hwc', preprocessing: { scale: 1, offset: 0, mean: M, std: S } }).get(0);
    const npyFile = join(dir, 'rgb.npy');
    // channels-first uint8: [3, 1, 2]
    writeNpy(npyFile, Uint8Array.from([0, 1, 2].flatMap((c) => [pixels[c], pixels[3 + c]])), [3, 1, 2]);
    const fromNpy = openDataset(npyFile, { inputShape: [3, 1, 2], preprocessing: { scale: 1, offset: 0, mean: M, std: S } }).get(0);
    for (let c = 0; c < 3; c++) {
      for (let q = 0; q < 2; q++) {
        expect(chw[c * 2 + q]).toBeCloseTo(expected(q, c), 5);
        expect(hwc[q * 3 + c]).toBeCloseTo(expected(q, c), 5);
        expect(fromNpy[c * 2 + q]).toBeCloseTo(expected(q, c), 5);
      }
    }
  });

  it('the model metadata gives mean/std when the options do not; wrong lengths and pixel-unit values are refused', () => {
    const file = join(dir, 'rgb.png');
    const notes: string[] = [];
    const o = { inputShape: [3, 1, 2], modelFile: 'm.onnx', onWarning: (m: string) => notes.push(m) };
    const fromMeta = openModelInputs(file, { ...o, metadata: { mean: '[0.485, 0.456, 0.406]', std: '0.229,0.224,0.225' } }).get(0);
    expect(fromMeta[1]).toBeCloseTo(expected(1, 0), 5);
    expect(notes.join('\n')).toMatch(/normalized per channel as the model's metadata says/);
    const overridden = openModelInputs(file, { ...o, metadata: { mean: '0.5', std: '0.5' }, mean: [0], std: [1] }).get(0);
    expect(overridden[0]).toBeCloseTo(1, 5);
    // --mean/--std replace the metadata's scale and offset too: (x - 0.5) / 0.5 * 127.5 is LeNet's pixel - 127.5
    const lenetMeta = { 'netmoments.preprocessing': '{"scale": 255, "offset": -127.5}' };
    const digit = (extra: object) => openModelInputs('fixtures/mnist/digit-0.png', { ...o, inputShape: [1, 28, 28], metadata: lenetMeta, ...extra }).get(0);
    expect(Array.from(digit({ mean: [0.5], std: [0.5], scale: 127.5 }))).toEqual(Array.from(digit({})));
    expect(normalizationFromMetadata({ 'netmoments.preprocessing': '{"scale":1,"offset":0,"mean":[0.5],"std":[0.25]}', mean: '0.1' })).toEqual({
      mean: [0.5],
      std: [0.25],
    });
    expect(normalizationFromMetadata({ image_mean: '[0.5,0.5,0.5]' })).toEqual({ mean: [0.5, 0.5, 0.5], std: undefined });
    expect(() => openDataset(file, { inputShape: [3, 1, 2], preprocessing: { scale: 1, offset: 0, mean: [0.5, 0.5] } })).toThrow(
      /the mean has 2 values \(0\.5,0\.5\) but the input has 3 channels/,
    );
    expect(() => openModelInputs(file, { ...o, metadata: { mean: '123.675,116.28,103.53', std: '58.395,57.12,57.375' } })).toThrow(
      /units of pixel\/255 .* divide pixel-unit values by 255/,
    );
  });

  it('class names from model metadata: a JSON array, a JSON mapping, a Python dict literal', () => {
    expect(classNamesFromMetadata({ classes: '["cat", "dog"]' })).toEqual(['cat', 'dog']);
    expect(classNamesFromMetadata({ class_names: '{"1": "dog", "0": "cat"}' })).toEqual(['cat', 'dog']);
    expect(classNamesFromMetadata({ names: "{0: 'person', 1: 'bicycle'}" })).toEqual(['person', 'bicycle']);
    expect(classNamesFromMetadata({ other: 'x' })).toBeUndefined();
    expect(() => classNamesFromMetadata({ classes: '{"0": "a", "2": "c"}' }, 'm.onnx')).toThrow(/metadata 'classes'/);
  });
});

describe('integer .npy inputs: said, never guessed', () => {
  const o = (notes: string[]) => ({ inputShape: [2], metadata: {}, modelFile: 'm.onnx', onWarning: (m: string) => notes.push(m) });

  it('int64 values are model units as given, and stderr says so', () => {
    const file = join(dir, 'ints.npy');
    writeNpy(file, BigInt64Array.from([3n, 250n]), [2]);
    const notes: string[] = [];
    expect(Array.from(openModelInputs(file, { ...o(notes), scale: 2 }).get(0))).toEqual([3, 250]);
    expect(notes).toContain(
      `${file}: int64 values are read as model units as given (not as pixels: only uint8 .npy holds pixels, preprocessed like images); save uint8 pixels or float32 model units to say which`,
    );
    expect(notes).toContain(`${file}: --scale does not apply: int64 .npy values are read as model units`);
  });

  it('uint8 values are pixels 0..255, preprocessed, and stderr says so', () => {
    const file = join(dir, 'bytes.npy');
    writeNpy(file, Uint8Array.from([0, 255]), [2]);
    const notes: string[] = [];
    expect(Array.from(openModelInputs(file, { ...o(notes), scale: 255, offset: -127.5 }).get(0))).toEqual([-127.5, 127.5]);
    expect(notes).toContain(`${file}: uint8 values are read as pixels 0..255 and preprocessed like images`);
  });
});
