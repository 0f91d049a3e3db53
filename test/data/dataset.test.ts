import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { NetmomentsError } from '../../src/errors.js';
import { naturalCompare, openDataset, readLabelFile } from '../../src/data/dataset.js';
import { readNpy, writeNpy } from '../../src/data/npy.js';
import { encodeGrayPng, encodeRgbPng } from '../../src/data/png.js';
import { preprocessingFromMetadata } from '../../src/data/preprocess.js';

const M = 'fixtures/mnist';
const LENET = { scale: 255, offset: -127.5 };
const dir = mkdtempSync(join(tmpdir(), 'nm-ds-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const labels100 = Array.from(readNpy(`${M}/labels-100.npy`).data as BigInt64Array, Number);
const digits100 = readNpy(`${M}/digits-100.npy`).data as Float32Array;

function errorOf(fn: () => unknown): NetmomentsError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(NetmomentsError);
    return e as NetmomentsError;
  }
  throw new Error('expected an error');
}

describe('openDataset', () => {
  it('a .npy batch with labels, by the layout rule', () => {
    const ds = openDataset(`${M}/digits-100.npy`, { inputShape: [1, 28, 28], labels: `${M}/labels-100.npy` });
    expect(ds.kind).toBe('npy');
    expect(ds.size).toBe(100);
    expect(ds.inputShape).toEqual([1, 28, 28]);
    expect(Array.from(ds.labels!)).toEqual(labels100);
    expect(Array.from(ds.get(37))).toEqual(Array.from(digits100.subarray(37 * 784, 38 * 784)));
    const batch = ds.getBatch([5, 0]);
    expect(batch.length).toBe(2 * 784);
    expect(Array.from(batch.subarray(784))).toEqual(Array.from(digits100.subarray(0, 784)));
    expect(ds.nameOf(3)).toBe('digits-100.npy[3]');
  });

  it('a .npy without a model shape: batch along axis 0', () => {
    const ds = openDataset(`${M}/digits-100.npy`);
    expect(ds.size).toBe(100);
    expect(ds.inputShape).toEqual([1, 28, 28]);
    expect(ds.labels).toBeUndefined();
  });

  it('a single digit .npy is one input', () => {
    const ds = openDataset(`${M}/digit-0.npy`, { inputShape: [1, 28, 28] });
    expect(ds.size).toBe(1);
    expect(Array.from(ds.get(0))).toEqual(Array.from(digits100.subarray(0, 784)));
  });

  it('preprocessing applies at load; uint8 .npy are pixels (x = v / 255)', () => {
    const p = join(dir, 'pixels.npy');
    writeNpy(p, Uint8Array.from([0, 255, 51, 102]), [2, 2]);
    const ds = openDataset(p, { inputShape: [2], preprocessing: LENET });
    expect(ds.size).toBe(2);
    expect(Array.from(ds.get(0))).toEqual([-127.5, 127.5]);
    expect(Array.from(ds.get(1))).toEqual([51 - 127.5, 102 - 127.5]);
    const f = join(dir, 'floats.npy');
    writeNpy(f, Float64Array.from([1, 2, 3, 4]), [4]);
    const fs = openDataset(f, { inputShape: [4], preprocessing: { scale: 2, offset: 1 } });
    expect(Array.from(fs.get(0))).toEqual([3, 5, 7, 9]);
  });

  it('an idx pair: labels found beside the images, same inputs as the .npy', () => {
    const ds = openDataset(`${M}/t10k-100-images-idx3-ubyte`, { inputShape: [1, 28, 28], preprocessing: LENET });
    expect(ds.kind).toBe('idx');
    expect(ds.size).toBe(100);
    expect(Array.from(ds.labels!)).toEqual(labels100);
    for (const i of [0, 50, 99]) expect(Array.from(ds.get(i))).toEqual(Array.from(digits100.subarray(i * 784, (i + 1) * 784)));
    const raw = openDataset(`${M}/t10k-100-images-idx3-ubyte`);
    expect(raw.inputShape).toEqual([28, 28]);
    expect(Math.max(...raw.get(0))).toBeLessThanOrEqual(1);
  });

  it('a folder of PNGs: sorted by name with numbers by value, labels from labels.csv', () => {
    const folder = join(dir, 'pngs');
    mkdirSync(folder);
    const px = (v: number) => encodeGrayPng(new Uint8Array(4).fill(v), 2, 2);
    writeFileSync(join(folder, 'img10.png'), px(100));
    writeFileSync(join(folder, 'img2.png'), px(20));
    writeFileSync(join(folder, 'img1.png'), px(10));
    writeFileSync(join(folder, 'notes.txt'), 'not an image');
    writeFileSync(join(folder, 'labels.csv'), 'file,label\nimg1.png,1\nimg2,2\nimg10.png,7\n');
    const ds = openDataset(folder, { preprocessing: { scale: 255, offset: 0 } });
    expect(ds.kind).toBe('png');
    expect(ds.size).toBe(3);
    expect(ds.inputShape).toEqual([1, 2, 2]);
    expect([0, 1, 2].map((i) => ds.nameOf(i))).toEqual(['img1.png', 'img2.png', 'img10.png']);
    expect([0, 1, 2].map((i) => Math.round(ds.get(i)[0]))).toEqual([10, 20, 100]);
    expect(Array.from(ds.labels!)).toEqual([1, 2, 7]);
  });

  it('a folder of PNGs with a model shape: grayscale replicated to 3 channels, a one-per-line labels file', () => {
    const folder = join(dir, 'pngs3');
    mkdirSync(folder);
    writeFileSync(join(folder, 'a.png'), encodeGrayPng(Uint8Array.from([255, 0]), 2, 1));
    writeFileSync(join(folder, 'b.png'), encodeRgbPng(Uint8Array.from([255, 0, 0, 0, 255, 0]), 2, 1));
    const lab = join(dir, 'ab.txt');
    writeFileSync(lab, '# labels\n3\n\n4\n');
    const ds = openDataset(folder, { inputShape: [3, 1, 2], labels: lab });
    expect(Array.from(ds.get(0))).toEqual([1, 0, 1, 0, 1, 0]);
    expect(Array.from(ds.get(1))).toEqual([1, 0, 0, 1, 0, 0]);
    expect(Array.from(ds.labels!)).toEqual([3, 4]);
  });

  it('a single PNG is a dataset of one equal to the .npy digit', () => {
    const ds = openDataset(`${M}/digit-0.png`, { inputShape: [1, 28, 28], preprocessing: LENET });
    expect(ds.size).toBe(1);
    expect(Array.from(ds.get(0))).toEqual(Array.from(digits100.subarray(0, 784)));
  });

  it('recognises files by content when the extension says nothing', () => {
    const p = join(dir, 'digits.bin');
    copyFileSync(`${M}/digits-100.npy`, p);
    expect(openDataset(p, { inputShape: [784] }).size).toBe(100);
  });
});

describe('openDataset errors (exit 2, the file named)', () => {
  it('the layout rule: a file that is neither one input nor a batch', () => {
    const e = errorOf(() => openDataset(`${M}/digits-100.npy`, { inputShape: [3, 32, 32] }));
    expect(e.code).toBe('BAD_INPUT');
    expect(e.describe()).toBe(
      `${M}/digits-100.npy: holds 78400 elements (shape [100, 1, 28, 28]), which is neither one input of 3072 elements ` +
        '(shape [3, 32, 32]) nor a batch [N, 3, 32, 32] of N*3072 elements',
    );
  });

  it('labels that do not match the count', () => {
    const e = errorOf(() => openDataset(`${M}/digit-0.npy`, { inputShape: [1, 28, 28], labels: `${M}/labels-100.npy` }));
    expect(e.describe()).toBe(`${M}/labels-100.npy: holds 100 labels for 1 inputs`);
  });

  it('non-finite input values', () => {
    const p = join(dir, 'nan.npy');
    writeNpy(p, Float32Array.from([0, NaN, 1]), [3]);
    expect(errorOf(() => openDataset(p)).describe()).toBe(`${p}: element 1 is NaN; input data must be finite`);
  });

  it('a PNG whose size does not match a flat (non-image) model input: refused (an image input resizes, test/data/images.test.ts)', () => {
    const e = errorOf(() => openDataset(`${M}/digit-0.png`, { inputShape: [1024] }));
    expect(e.describe()).toMatch(/digit-0\.png: the image has shape \[1, 28, 28\] \(784 values\) but the model's input is \[1024\] \(1024 values\)/);
  });

  it('a folder with PNGs of different sizes fails on the odd one, naming it', () => {
    const folder = join(dir, 'mixed');
    mkdirSync(folder);
    writeFileSync(join(folder, '1.png'), encodeGrayPng(new Uint8Array(4), 2, 2));
    writeFileSync(join(folder, '2.png'), encodeGrayPng(new Uint8Array(6), 3, 2));
    const ds = openDataset(folder);
    expect(errorOf(() => ds.get(1)).describe()).toMatch(/2\.png: the image has shape \[1, 2, 3\], unlike the first image 1\.png/);
  });

  it('missing files, empty folders, unknown formats, bad labels', () => {
    expect(errorOf(() => openDataset(join(dir, 'nope.npy'))).describe()).toMatch(/nope\.npy: no such file/);
    const empty = join(dir, 'empty');
    mkdirSync(empty);
    expect(errorOf(() => openDataset(empty)).message).toMatch(/no .png files/);
    const txt = join(dir, 'x.csv');
    writeFileSync(txt, 'hello');
    expect(errorOf(() => openDataset(txt)).message).toMatch(/unrecognised data file/);
    const badNpy = join(dir, 'bad.npy');
    writeFileSync(badNpy, 'hello');
    expect(errorOf(() => openDataset(badNpy)).message).toMatch(/bad magic/);
    const neg = join(dir, 'neg.npy');
    writeNpy(neg, Int32Array.from([1, -1]), [2]);
    expect(errorOf(() => readLabelFile(neg)).message).toMatch(/label 1 is -1/);
  });

  it('the model states its preprocessing in metadata', () => {
    const meta = { 'netmoments.preprocessing': '{"scale":255,"offset":-127.5,"layout":"NCHW","source":"pixel in [0,255] minus 127.5"}' };
    expect(preprocessingFromMetadata(meta)).toEqual({ scale: 255, offset: -127.5, layout: 'NCHW', source: 'pixel in [0,255] minus 127.5' });
    expect(preprocessingFromMetadata({})).toBeUndefined();
    expect(() => preprocessingFromMetadata({ 'netmoments.preprocessing': '{"scale":"x"}' }, 'm.onnx')).toThrow(NetmomentsError);
  });

  it('naturalCompare', () => {
    expect(['b10', 'b9', 'a', 'b09x', 'b1'].sort(naturalCompare)).toEqual(['a', 'b1', 'b9', 'b09x', 'b10']);
  });
});
