import { describe, expect, it } from 'vitest';
import { NetmomentsError } from '../../src/errors.js';
import { batchLayout, checkCovariance, checkInputVector, inputAt, perInputShape } from '../../src/data/layout.js';

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
    expect(message(() => checkCovariance([784, 783], 784, 'cov.npy'))).toMatch(/^cov\.npy: a covariance must have n x n = 784 x 784 = 614656 elements .* holds 613872/);
    expect(() => checkInputVector([1, 28, 28], 784, 'the noise mean')).not.toThrow();
    expect(message(() => checkInputVector([28, 27], 784, 'the noise mean', 'mu.npy'))).toMatch(
      /^mu\.npy: the noise mean holds 756 elements \(shape \[28, 27\]\); the model's input has 784 elements/,
    );
  });
});
