// The image fixtures of fixtures/mnist/ for JPEG and class-folder inputs, made from the committed
// digits (run after `npm run build`; deterministic, byte-identical each run):
//   mnist/digit-0.jpg  digit-0.png as a JPEG (jpeg-js, quality 95; gray stored as YCbCr)
//   mnist/by-class/    the first 20 digits of digits-100.npy and the first "4" (index 52), as
//                      by-class/LABEL/digit-II.png (8-bit grayscale, pixel = value + 127.5)
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import jpeg from 'jpeg-js';
import { readNpy } from '../dist/data/npy.js';
import { decodePngPixels, writeGrayPng } from '../dist/data/png.js';

const mnist = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'mnist');

const png = decodePngPixels(readFileSync(join(mnist, 'digit-0.png')));
const rgba = new Uint8Array(png.width * png.height * 4);
for (let q = 0; q < png.width * png.height; q++) {
  const v = Math.round(png.x[q] * 255);
  rgba.set([v, v, v, 255], 4 * q);
}
writeFileSync(join(mnist, 'digit-0.jpg'), jpeg.encode({ data: rgba, width: png.width, height: png.height }, 95).data);

const x = readNpy(join(mnist, 'digits-100.npy')).data;
const y = Array.from(readNpy(join(mnist, 'labels-100.npy')).data, Number);
const picked = [...Array.from({ length: 20 }, (_, i) => i), y.indexOf(4)];
rmSync(join(mnist, 'by-class'), { recursive: true, force: true });
for (const i of picked) {
  const pixels = Uint8Array.from(x.subarray(i * 784, (i + 1) * 784), (v) => v + 127.5);
  mkdirSync(join(mnist, 'by-class', String(y[i])), { recursive: true });
  writeGrayPng(join(mnist, 'by-class', String(y[i]), `digit-${String(i).padStart(2, '0')}.png`), pixels, 28, 28);
}
console.log(`wrote digit-0.jpg and by-class/ (${picked.length} digits)`);
