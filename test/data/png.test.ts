import { readFileSync } from 'node:fs';
import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';
import { NetmomentsError } from '../../src/errors.js';
import { readNpy } from '../../src/data/npy.js';
import { decodePng, encodeGrayPng, encodeRgbPng, readPng } from '../../src/data/png.js';

const LENET = { scale: 255, offset: -127.5 };

/** A PNG through pngjs directly, for colour types our encoder does not write. */
function pngjsEncode(rgba: number[], width: number, height: number, colorType: number, bitDepth: 8 | 16 = 8): Uint8Array {
  const png = new PNG({ width, height, colorType, inputColorType: 6, bitDepth, inputHasAlpha: true } as never);
  png.data = bitDepth === 16 ? Buffer.from(Uint16Array.from(rgba).buffer) : Buffer.from(rgba);
  return new Uint8Array(PNG.sync.write(png, { colorType, inputColorType: 6, inputHasAlpha: true, bitDepth } as never));
}

describe('png', () => {
  it('the bundled digit PNG reads equal to digit-0.npy (scale 255, offset -127.5)', () => {
    const img = readPng('fixtures/mnist/digit-0.png', LENET);
    const npy = readNpy('fixtures/mnist/digit-0.npy');
    expect(img.shape).toEqual([1, 28, 28]);
    expect(npy.shape).toEqual([1, 28, 28]);
    expect(img.depth).toBe(8);
    expect(Array.from(img.data)).toEqual(Array.from(npy.data as Float32Array));
  });

  it('grayscale: x = pixel / 255, then x * scale + offset', () => {
    const bytes = encodeGrayPng(Uint8Array.from([0, 51, 255, 102]), 2, 2);
    expect(Array.from(decodePng(bytes).data)).toEqual(Array.from(Float32Array.from([0, 0.2, 1, 0.4])));
    const expected = [0, 51, 255, 102].map((v) => Math.fround((v / 255) * 2 - 1));
    expect(Array.from(decodePng(bytes, { scale: 2, offset: -1 }).data)).toEqual(expected);
    expect(expected[1]).toBeCloseTo(-0.6, 6);
  });

  it('RGB: channels-first by default, channels-last on request', () => {
    // 2x1 image: pixel0 = (10, 20, 30), pixel1 = (40, 50, 60)
    const bytes = encodeRgbPng(Uint8Array.from([10, 20, 30, 40, 50, 60]), 2, 1);
    const chw = decodePng(bytes, { scale: 255 });
    expect(chw.shape).toEqual([3, 1, 2]);
    expect(Array.from(chw.data).map(Math.round)).toEqual([10, 40, 20, 50, 30, 60]);
    const hwc = decodePng(bytes, { scale: 255, layout: 'hwc' });
    expect(hwc.shape).toEqual([1, 2, 3]);
    expect(Array.from(hwc.data).map(Math.round)).toEqual([10, 20, 30, 40, 50, 60]);
  });

  it('RGBA: alpha is dropped, colour kept as stored', () => {
    const bytes = pngjsEncode([10, 20, 30, 0, 40, 50, 60, 128], 2, 1, 6);
    const img = decodePng(bytes, { scale: 255 });
    expect(img.channels).toBe(3);
    expect(Array.from(img.data).map(Math.round)).toEqual([10, 40, 20, 50, 30, 60]);
  });

  it('16-bit grayscale keeps its precision (x = v / 65535)', () => {
    const M = 65535;
    const bytes = pngjsEncode([0, 0, 0, M, M, M, M, M, 32769, 32769, 32769, M], 3, 1, 0, 16);
    const img = decodePng(bytes);
    expect(img.depth).toBe(16);
    expect(Array.from(img.data)).toEqual([0, 1, Math.fround(32769 / M)]);
  });

  it('channels: 3 replicates a grayscale image; 1 on a colour image is an error', () => {
    const gray = encodeGrayPng(Uint8Array.from([255, 0]), 2, 1);
    const rep = decodePng(gray, { channels: 3 });
    expect(rep.shape).toEqual([3, 1, 2]);
    expect(Array.from(rep.data)).toEqual([1, 0, 1, 0, 1, 0]);
    const rgb = encodeRgbPng(new Uint8Array(6), 2, 1);
    expect(() => decodePng(rgb, { channels: 1 }, 'c.png')).toThrow(/expects 1 channel .* colour image/);
  });

  it('not a PNG / corrupt PNG: NetmomentsError naming the file', () => {
    expect(() => decodePng(new Uint8Array(20), {}, 'x.png')).toThrow(NetmomentsError);
    const good = readFileSync('fixtures/mnist/digit-0.png');
    try {
      decodePng(good.subarray(0, 60), {}, 'cut.png');
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(NetmomentsError);
      expect((e as NetmomentsError).describe()).toMatch(/^cut\.png: cannot decode the PNG/);
    }
  });
});
