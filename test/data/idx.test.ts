import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { NetmomentsError } from '../../src/errors.js';
import { encodeIdx, parseIdx, readIdx, readIdxImages, readIdxLabels, writeIdx } from '../../src/data/idx.js';
import { readNpy } from '../../src/data/npy.js';

const IMAGES = 'fixtures/mnist/t10k-100-images-idx3-ubyte';
const LABELS = 'fixtures/mnist/t10k-100-labels-idx1-ubyte';
const dir = mkdtempSync(join(tmpdir(), 'nm-idx-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function errorOf(fn: () => unknown): NetmomentsError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(NetmomentsError);
    return e as NetmomentsError;
  }
  throw new Error('expected an error');
}

describe('idx: the bundled MNIST sample', () => {
  it('images are [100, 28, 28] raw pixels equal to the .npy sample + 127.5', () => {
    const img = readIdxImages(IMAGES);
    expect(img.shape).toEqual([100, 28, 28]);
    const npy = readNpy('fixtures/mnist/digits-100.npy');
    const f = npy.data as Float32Array;
    expect(f.length).toBe(img.data.length);
    let mismatches = 0;
    for (let i = 0; i < f.length; i++) if (img.data[i] - 127.5 !== f[i]) mismatches++;
    expect(mismatches).toBe(0);
    // Real digits: mostly background, some full ink.
    const zeros = img.data.filter((v) => v === 0).length / img.data.length;
    expect(zeros).toBeGreaterThan(0.7);
    expect(Math.max(...img.data)).toBe(255);
  });

  it('labels are [100] and equal labels-100.npy', () => {
    const lab = readIdxLabels(LABELS);
    expect(lab.shape).toEqual([100]);
    const npy = readNpy('fixtures/mnist/labels-100.npy');
    expect(npy.dtype).toBe('int64');
    expect(Array.from(lab.data)).toEqual(Array.from(npy.data as BigInt64Array, Number));
    expect(new Set(lab.data).size).toBe(10); // every class present
  });

  it('reads a gzip-compressed copy the same', () => {
    const gz = join(dir, 'images-idx3-ubyte.gz');
    writeFileSync(gz, gzipSync(readFileSync(IMAGES)));
    expect(readIdxImages(gz).data).toEqual(readIdxImages(IMAGES).data);
  });
});

describe('idx: encode and errors', () => {
  it('round-trips through encodeIdx / writeIdx (plain and .gz)', () => {
    const data = Uint8Array.from({ length: 24 }, (_, i) => i * 10);
    expect(parseIdx(encodeIdx(data, [2, 3, 4]))).toEqual({ shape: [2, 3, 4], data });
    writeIdx(join(dir, 'x-idx3-ubyte.gz'), data, [2, 3, 4]);
    expect(readIdx(join(dir, 'x-idx3-ubyte.gz')).data).toEqual(data);
  });

  it('checks the magic', () => {
    const f = join(dir, 'bad-magic');
    writeFileSync(f, Uint8Array.from([1, 2, 8, 3, 0, 0, 0, 0]));
    const e = errorOf(() => readIdx(f));
    expect(e.message).toMatch(/bad magic/);
    expect(e.describe()).toContain(f);
  });

  it('rejects a labels file read as images and vice versa, naming the file', () => {
    let e = errorOf(() => readIdxImages(LABELS));
    expect(e.message).toMatch(/expected an idx3 file .* found magic 0x00000801/);
    expect(e.file).toBe(LABELS);
    e = errorOf(() => readIdxLabels(IMAGES));
    expect(e.message).toMatch(/expected an idx1 file .* found magic 0x00000803/);
  });

  it('rejects non-ubyte data types', () => {
    const f = join(dir, 'float-idx');
    writeFileSync(f, Uint8Array.from([0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0]));
    const e = errorOf(() => readIdx(f));
    expect(e.message).toMatch(/data type 0x0d/);
    expect(e.code).toBe('UNSUPPORTED');
  });

  it('checks the sizes: truncated and oversized data', () => {
    const bytes = readFileSync(IMAGES);
    const f = join(dir, 'trunc-idx3-ubyte');
    writeFileSync(f, bytes.subarray(0, bytes.length - 1));
    let e = errorOf(() => readIdxImages(f));
    expect(e.message).toMatch(/truncated idx data: shape \[100, 28, 28\] needs 78400 bytes, the file holds 78399/);
    writeFileSync(f, Buffer.concat([bytes, Buffer.from([0])]));
    e = errorOf(() => readIdxImages(f));
    expect(e.message).toMatch(/holds 78401 bytes/);
    writeFileSync(f, bytes.subarray(0, 10));
    e = errorOf(() => readIdxImages(f));
    expect(e.message).toMatch(/truncated idx header/);
  });
});
