// bench/jacobian: forward- vs reverse-mode Jacobians on the bundled LeNet at full noise (isotropic
// sigma 8 on all 784 pixels, r = 784 noise directions), from one run:
//   - the two-stage linearization (A F, B, no expected flips) at each ReLU, --jacobian forward vs
//     reverse, and which direction auto picks (reverse when the bottom's width is at most r)
//   - the bottom Jacobian alone at each ReLU: 784 forward passes vs p reverse passes
// Median wall time over `digits` digits after one warm-up (sessions created once, as for a batch).
// Usage: npm run build && node bench/jacobian.mjs [digits=5]
import { loadModel } from '../dist/onnx/load.js';
import { Linearizer } from '../dist/linearize/linearizer.js';
import { createJacobianEngine } from '../dist/linearize/jacobian.js';
import { splitModelAt } from '../dist/onnx/split.js';
import { readNpy, npyToFloat32 } from '../dist/data/npy.js';
import { cpus } from 'node:os';

const digits = Number(process.argv[2] ?? 5);
const model = loadModel(new URL('../fixtures/lenet.onnx', import.meta.url).pathname);
const xs = npyToFloat32(readNpy(new URL('../fixtures/mnist/digits-100.npy', import.meta.url).pathname));
const n = 784;
const factor = { kind: 'axes', n, r: n, support: Int32Array.from({ length: n }, (_, i) => i), sd: new Float64Array(n).fill(8) };
const median = (a) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)];
const digit = (k) => xs.subarray(k * n, (k + 1) * n);

async function timeIt(fn) {
  await fn(0); // warm-up (creates the adjoint session on first use)
  const runs = [];
  for (let k = 1; k <= digits; k++) {
    const t = performance.now();
    await fn(k);
    runs.push((performance.now() - t) / 1000);
  }
  return median(runs);
}

console.log(`machine: ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), node ${process.version}`);
const relus = model.graph.relus().length;
for (let relu = 0; relu < relus; relu++) {
  const times = {};
  let p = 0;
  let d = 0;
  let auto = '';
  for (const mode of ['forward', 'reverse', 'auto']) {
    const lin = await Linearizer.create(model, { relu, jacobian: mode, flips: false });
    p = lin.p;
    d = lin.d;
    times[mode] = await timeIt((k) => lin.linearize(digit(k), factor));
    if (mode === 'auto') auto = lin.jacobianDescription;
    await lin.release();
  }
  console.log(
    `linearize, ReLU ${relu} (p = ${p}, d = ${d}, r = ${n}): forward ${times.forward.toFixed(3)} s, reverse ${times.reverse.toFixed(3)} s, ratio forward/reverse ${(times.forward / times.reverse).toFixed(2)}x; auto ${times.auto.toFixed(3)} s (${auto})`,
  );
}
for (let relu = 0; relu < relus; relu++) {
  const split = await splitModelAt(model.graph, relu, { file: model.file });
  const jac = {};
  for (const mode of ['forward', 'reverse']) {
    const e = await createJacobianEngine(split.bottom, { mode, outputs: [split.relu.input] });
    jac[mode] = await timeIt((k) => e.jacobian(digit(k)));
    await e.release();
  }
  console.log(
    `bottom Jacobian at ReLU ${relu} (${split.relu.width} x ${n}): forward ${jac.forward.toFixed(3)} s, reverse ${jac.reverse.toFixed(3)} s, ratio forward/reverse ${(jac.forward / jac.reverse).toFixed(2)}x`,
  );
}
