import { describe, expect, it } from 'vitest';
import { NetmomentsError } from '../../src/errors.js';
import {
  batchLayout,
  checkCovariance,
  checkInputVector,
  imageGeometry,
  inputAt,
  parseLayoutChoice,
  perInputShape,
  pixelIndex,
  pngLayoutFor,
  requireImageGeometry,
} from '../../src/data/layout.js';
import { windowIndices } from '../../src/noise.js';

function message(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(NetmomentsError);
    expect((e as NetmomentsError).code).toBe('BAD_INPUT');
    return (e as NetmomentsError).describe();
  }
  throw new Error('expected an error');
}

describe('layout rule', () => {
  const input = [1, 28, 28]; // n = 784

  it('drops the batch axis of the model input, symbolic or fixed', () => {
    expect(perInputShape(['N', 1, 28, 28])).toEqual([1, 28, 28]);
    expect(perInputShape([1, 1, 28, 28])).toEqual([1, 28, 28]);
    expect(perInputShape([null, 100])).toEqual([100]);
    expect(() => perInputShape(['N', 'C', 28, 28], 'm.onnx')).toThrow(/every dimension after the batch axis/);
    expect(() => perInputShape([])).toThrow(NetmomentsError);
  });

  it('a file with n elements is one input, whatever its own shape', () => {
    for (const shape of [[784], [28, 28], [1, 28, 28], [1, 1, 28, 28], [784, 1]]) {
      expect(batchLayout(shape, input)).toEqual({ count: 1, n: 784, single: true });
    }
  });

  it('a leading axis N with N*n elements is a batch of N', () => {
    expect(batchLayout([100, 1, 28, 28], input)).toEqual({ count: 100, n: 784, single: false });
    expect(batchLayout([100, 28, 28], input)).toEqual({ count: 100, n: 784, single: false });
    expect(batchLayout([7, 784], input)).toEqual({ count: 7, n: 784, single: false });
    expect(batchLayout([0, 784], input)).toEqual({ count: 0, n: 784, single: false });
  });

  it('anything else is an error giving both counts and the expected shapes', () => {
    const m = message(() => batchLayout([3, 700], input, 'x.npy'));
    expect(m).toBe(
      'x.npy: holds 2100 elements (shape [3, 700]), which is neither one input of 784 elements (shape [1, 28, 28]) ' +
        'nor a batch [N, 1, 28, 28] of N*784 elements',
    );
    // N*n elements, but the leading axis does not split them: [784, 2] for n = 784 is not a batch of 2.
    expect(() => batchLayout([784, 2], input)).toThrow(/1568 elements/);
    expect(() => batchLayout([4, 392], input)).toThrow(NetmomentsError);
    expect(batchLayout([2, 2, 392], input).count).toBe(2);
  });

  it('inputAt views input i of a batch', () => {
    const data = Float32Array.from({ length: 12 }, (_, i) => i);
    const l = batchLayout([3, 2, 2], [4]);
    expect(Array.from(inputAt(data, l, 2))).toEqual([8, 9, 10, 11]);
    expect(() => inputAt(data, l, 3)).toThrow(RangeError);
  });

  it('covariances are n x n elements, vectors n', () => {
    expect(() => checkCovariance([784, 784], 784)).not.toThrow();
    expect(() => checkCovariance([784 * 784], 784)).not.toThrow();
    expect(message(() => checkCovariance([784, 783], 784, 'cov.npy'))).toMatch(
      /^cov\.npy: a covariance must have n x n = 784 x 784 = 614656 elements .* holds 613872/,
    );
    expect(() => checkInputVector([1, 28, 28], 784, 'the noise mean')).not.toThrow();
    expect(message(() => checkInputVector([28, 27], 784, 'the noise mean', 'mu.npy'))).toMatch(
      /^mu\.npy: the noise mean holds 756 elements \(shape \[28, 27\]\); the model's input has 784 elements/,
    );
  });
});

describe('image layout rule', () => {
  const layoutOf = (shape: number[], choice?: 'auto' | 'chw' | 'hwc') => imageGeometry(shape, choice)?.layout;

  it('auto: channels-last when the last axis is 1, 3 or 4 and the first is not; else channels-first', () => {
    expect(layoutOf([28, 28, 1])).toBe('hwc');
    expect(layoutOf([32, 32, 3])).toBe('hwc');
    expect(layoutOf([64, 48, 4])).toBe('hwc');
    expect(layoutOf([1, 28, 28])).toBe('chw');
    expect(layoutOf([3, 32, 32])).toBe('chw');
    expect(layoutOf([3, 32, 3])).toBe('chw'); // both ends look like channels: channels-first
    expect(layoutOf([1, 1, 1])).toBe('chw');
    expect(layoutOf([16, 20, 20])).toBe('chw'); // neither end: channels-first
    expect(layoutOf([2, 3, 20, 20])).toBe('chw'); // rank 4: channels-first
    expect(imageGeometry([28, 28, 1])).toEqual({ layout: 'hwc', chosen: 'auto', height: 28, width: 28, channels: 1, planes: 1, picture: true });
    expect(imageGeometry([3, 32, 32])).toEqual({ layout: 'chw', chosen: 'auto', height: 32, width: 32, channels: 3, planes: 1, picture: true });
    expect(imageGeometry([28, 28])).toEqual({ layout: 'chw', chosen: 'auto', height: 28, width: 28, channels: 1, planes: 1, picture: true });
    // a feature map has windows but is not a picture; a flat input is not an image at all
    expect(imageGeometry([16, 20, 20])).toMatchObject({ channels: 16, height: 20, width: 20, picture: false });
    expect(imageGeometry([100])).toBeUndefined();
    expect(imageGeometry([])).toBeUndefined();
  });

  it('--layout overrides the rule', () => {
    expect(imageGeometry([28, 28, 1], 'chw')).toMatchObject({ layout: 'chw', chosen: 'option', channels: 28, height: 28, width: 1, picture: false });
    expect(imageGeometry([5, 6, 3], 'chw')).toMatchObject({ layout: 'chw', channels: 5, height: 6, width: 3 });
    expect(imageGeometry([3, 32, 32], 'hwc')).toMatchObject({ layout: 'hwc', channels: 32, height: 3, width: 32 });
    expect(imageGeometry([2, 5, 6, 3], 'hwc')).toMatchObject({ layout: 'hwc', planes: 2, height: 5, width: 6, channels: 3, picture: false });
    expect(imageGeometry([28, 28], 'hwc')).toMatchObject({ height: 28, width: 28, channels: 1, picture: true });
    expect(imageGeometry([100], 'hwc')).toBeUndefined();
    expect(parseLayoutChoice(undefined)).toBe('auto');
    expect(parseLayoutChoice('hwc')).toBe('hwc');
    expect(() => parseLayoutChoice('nhwc')).toThrow(/--layout must be auto, chw or hwc/);
  });

  it('pixelIndex and PNG order follow the layout; a flat input keeps channels-first PNGs unless told', () => {
    const chw = imageGeometry([3, 6, 5])!;
    const hwc = imageGeometry([6, 5, 3])!;
    expect(hwc.layout).toBe('hwc');
    expect(pixelIndex(chw, 2, 1, 3)).toBe(2 * 30 + 1 * 5 + 3);
    expect(pixelIndex(hwc, 2, 1, 3)).toBe((1 * 5 + 3) * 3 + 2);
    expect(pngLayoutFor([28, 28, 1])).toBe('hwc');
    expect(pngLayoutFor([1, 28, 28])).toBe('chw');
    expect(pngLayoutFor([784])).toBe('chw');
    expect(pngLayoutFor([2352], 'hwc')).toBe('hwc');
    expect(pngLayoutFor([28, 28, 1], 'chw')).toBe('chw');
  });

  it('a rank-1 input is a usage error naming the model', () => {
    try {
      requireImageGeometry([100], 'auto', '--window', 'mlp.onnx');
      throw new Error('expected an error');
    } catch (e) {
      expect((e as NetmomentsError).code).toBe('BAD_USAGE');
      expect((e as NetmomentsError).describe()).toBe(
        "mlp.onnx: --window needs an image input ([C, H, W], [H, W, C] or [H, W] without the batch axis); the model's input has shape [100]",
      );
    }
  });

  it('windowIndices: the same pixels, all channels, in either layout', () => {
    const w = { row: 1, col: 2, height: 2, width: 3 };
    const C = 3,
      H = 6,
      W = 5;
    const chw = Array.from(windowIndices([C, H, W], w));
    const hwc = Array.from(windowIndices([H, W, C], w));
    expect(chw).toHaveLength(C * 2 * 3);
    // map every channels-last index to its channels-first twin: the same (channel, row, column) set
    const asChw = hwc.map((k) => {
      const c = k % C,
        j = Math.floor(k / C) % W,
        i = Math.floor(k / (C * W));
      return (c * H + i) * W + j;
    });
    expect(asChw.sort((a, b) => a - b)).toEqual(chw);
    expect(hwc).toEqual([...hwc].sort((a, b) => a - b)); // sorted
    // [28, 28, 1] is a 28x28 image (it used to be read as 28 rows of 1 column)
    expect(Array.from(windowIndices([28, 28, 1], { row: 0, col: 20, height: 1, width: 8 }))).toEqual([20, 21, 22, 23, 24, 25, 26, 27]);
    expect(Array.from(windowIndices([28, 28, 1], { row: 0, col: 0, height: 2, width: 1 }, undefined, 'chw'))).toEqual(
      Array.from({ length: 28 }, (_, c) => [c * 28, c * 28 + 1]).flat(),
    );
    expect(() => windowIndices([28, 28, 1], { row: 0, col: 0, height: 7, width: 7 }, 'm.onnx', 'chw')).toThrow(
      /--window 0,0,7,7 does not fit inside the input \[28, 28, 1\], channels-first \(--layout chw\), rows x columns 28x1/,
    );
    expect(() => windowIndices([100], w, 'm.onnx')).toThrow(/--window needs an image input/);
  });
});
