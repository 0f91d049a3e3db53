/**
 * Class-per-folder datasets (root/CLASS/*.png|jpg): labels from the folder names, and `report`,
 * `gate` and `bank` give on them what they give on the same images as a .npy batch with a labels
 * file (same order: class by class, names by value within a class).
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { openDataset } from '../../src/data/dataset.js';
import { openModelInputs } from '../../src/data/inputs.js';
import { encodeNpy, parseNpy } from '../../src/data/npy.js';
import { encodeGrayPng } from '../../src/data/png.js';
import { cli, ROOT } from '../helpers/cli.js';
import { tmp } from './helpers.js';

const dir = tmp('nm-classes-');
const root = join(dir, 'digits');
const x = parseNpy(readFileSync(join(ROOT, 'fixtures/mnist/digits-100.npy'))).data as Float32Array;
const y = Array.from(parseNpy(readFileSync(join(ROOT, 'fixtures/mnist/labels-100.npy'))).data as BigInt64Array, Number);

/** The first digit of each class and two more: 12 inputs, every class 0..9 present. */
const picked = [...Array.from({ length: 10 }, (_, c) => y.indexOf(c)), y.indexOf(7, y.indexOf(7) + 1), y.indexOf(1, y.indexOf(1) + 1)];
/** The class-folder order: class by class, then by index (file names d<index>.png compare by value). */
const order = [...picked].sort((a, b) => y[a] - y[b] || a - b);
const npy = join(dir, 'digits.npy');
const labels = join(dir, 'labels.npy');

beforeAll(async () => {
  for (const i of picked) {
    mkdirSync(join(root, String(y[i])), { recursive: true });
    // digits-100.npy holds pixel - 127.5 (LeNet's model units): back to 8-bit pixels, exactly
    writeFileSync(
      join(root, String(y[i]), `d${i}.png`),
      encodeGrayPng(
        Uint8Array.from(x.subarray(i * 784, (i + 1) * 784), (v) => v + 127.5),
        28,
        28,
      ),
    );
  }
  const data = new Float32Array(order.length * 784);
  order.forEach((i, k) => data.set(x.subarray(i * 784, (i + 1) * 784), k * 784));
  writeFileSync(npy, encodeNpy(data, [order.length, 1, 28, 28]));
  writeFileSync(
    labels,
    encodeNpy(
      BigInt64Array.from(order, (i) => BigInt(y[i])),
      [order.length],
    ),
  );
});

const noise = ['--sigma', '8'];

describe('class-per-folder datasets', () => {
  it('labels are the folder index, inputs class by class; the values equal the .npy digits', async () => {
    const ds = openDataset(root, { inputShape: [1, 28, 28], preprocessing: { scale: 255, offset: -127.5 } });
    expect(ds.size).toBe(12);
    expect(ds.classes).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
    expect(Array.from(ds.labels!)).toEqual(order.map((i) => y[i]));
    expect(ds.nameOf(0)).toBe(`0/d${order[0]}.png`);
    for (let k = 0; k < order.length; k++) expect(Array.from(ds.get(k))).toEqual(Array.from(x.subarray(order[k] * 784, (order[k] + 1) * 784)));
  });

  it("the model's class names decide the index; a folder not among them is refused; a subset of numbered folders is said", async () => {
    const sub = join(dir, 'pets');
    for (const [name, i] of [
      ['dog', picked[0]],
      ['cat', picked[1]],
    ] as const) {
      mkdirSync(join(sub, name), { recursive: true });
      writeFileSync(
        join(sub, name, 'a.png'),
        encodeGrayPng(
          Uint8Array.from(x.subarray(i * 784, (i + 1) * 784), (v) => v + 127.5),
          28,
          28,
        ),
      );
    }
    expect(Array.from(openDataset(sub, { classNames: ['cat', 'dog'] }).labels!)).toEqual([0, 1]);
    expect(Array.from(openDataset(sub, { classNames: ['bird', 'dog', 'cat'] }).labels!)).toEqual([1, 2]);
    expect(Array.from(openDataset(sub).labels!)).toEqual([0, 1]); // sorted: cat, dog
    expect(() => openDataset(sub, { classNames: ['cat', 'bird'] })).toThrow(/class folder 'dog' is not one of the model's 2 class names/);
    expect(() => openDataset(sub, { labels })).toThrow(/takes its labels from the folder names/);
    const numbered = join(dir, 'numbered');
    mkdirSync(join(numbered, '3'), { recursive: true });
    mkdirSync(join(numbered, '7'), { recursive: true });
    writeFileSync(join(numbered, '3', 'a.png'), encodeGrayPng(new Uint8Array(784), 28, 28));
    writeFileSync(join(numbered, '7', 'a.png'), encodeGrayPng(new Uint8Array(784), 28, 28));
    const notes: string[] = [];
    openModelInputs(numbered, { inputShape: [1, 28, 28], metadata: {}, modelFile: 'm.onnx', onWarning: (m) => notes.push(m) });
    expect(notes.join('\n')).toMatch(/the class folder '3' is class 0, not 3 \(folder i is class i: add an empty folder for each missing class/);
  });

  it('report and gate on the class folders equal report on the .npy with labels; bank gives the same centres', async () => {
    const a = join(dir, 'report-npy');
    const b = join(dir, 'gate-folders');
    const ra = await cli(['report', 'fixtures/lenet.onnx', '--data', npy, '--labels', labels, ...noise, '--out-dir', a, '--quiet']);
    expect(ra.code, ra.stderr).toBe(0);
    const rb = await cli(['gate', 'fixtures/lenet.onnx', '--data', root, ...noise, '--max-flip-rate', '0.5', '--min-accuracy', '0.5', '--out-dir', b]);
    expect(rb.code, rb.stderr).toBe(0);
    expect(rb.stderr).toMatch(/digits: 10 classes from the folders; labels by the folder names sorted/);
    expect(readFileSync(join(b, 'samples.csv'), 'utf8')).toBe(readFileSync(join(a, 'samples.csv'), 'utf8'));
    const sa = JSON.parse(readFileSync(join(a, 'summary.json'), 'utf8'));
    const sb = JSON.parse(readFileSync(join(b, 'summary.json'), 'utf8'));
    expect(sb.data.sha256).toBe(sa.data.sha256);
    expect(sb.data.count).toBe(12);
    for (const s of [sa, sb]) delete s.data;
    expect(sb).toEqual(sa);
    expect(sa.accuracy.clean).toBeGreaterThan(0.9); // the labels are the digits' own

    const bankA = join(dir, 'bank-npy');
    const bankB = join(dir, 'bank-folders');
    expect((await cli(['bank', 'fixtures/lenet.onnx', '--data', npy, '--k', '2', '--out-dir', bankA, '--quiet'])).code).toBe(0);
    expect((await cli(['bank', 'fixtures/lenet.onnx', '--data', root, '--k', '2', '--out-dir', bankB, '--quiet'])).code).toBe(0);
    expect(readFileSync(join(bankB, 'centres.npy'))).toEqual(readFileSync(join(bankA, 'centres.npy')));
  }, 240_000);
});
