// bench/propagate-layers: where propagate loses accuracy inside a net: at each named tensor, the
// propagated variance / Monte Carlo's per unit (percentiles over the units with MC variance > 0)
// and the mean error in MC sd, on the first input of a data file or folder.
// Usage: npm run build && [PROPOPTS='{"hermiteColumns":96}'] node bench/propagate-layers.mjs MODEL INPUT SIGMA SAMPLES TENSOR...
// e.g. node bench/propagate-layers.mjs fixtures/fashion-resnet.onnx fixtures/fashion/test-00.png 4 8000 /Add_output_0 logits
// (PROPOPTS: extra PropagatorOptions as JSON). MC's relative sd of a variance is sqrt(2/SAMPLES).
import { loadModel } from '../dist/onnx/load.js';
import { Linearizer } from '../dist/linearize/linearizer.js';
import { ModelEvaluator } from '../dist/linearize/evaluator.js';
import { openModelInputs } from '../dist/data/inputs.js';
import { monteCarloMoments } from '../dist/moments/montecarlo.js';
import { createPropagator } from '../dist/propagate/index.js';
import { probeShapes } from '../dist/linearize/shapes.js';
const [modelFile, png, sigma, samples, ...names] = process.argv.slice(2);
const model = loadModel(modelFile);
const inputShape = Linearizer.inputShapeOf(model);
const ds = openModelInputs(png, { inputShape, metadata: model.graph.metadata, modelFile });
const x = ds.get(0);
const noise = { kind: 'isotropic', sigma: Number(sigma) };
const shapes = await probeShapes(model.graph);
const extra = JSON.parse(process.env.PROPOPTS ?? '{}');
for (const name of names) {
  const shape = shapes.get(name).slice(1);
  const size = shape.reduce((a, b) => a * b, 1);
  const prop = await createPropagator(model, { output: name, threads: 1, ...extra });
  const p = await prop.moments(x, noise);
  await prop.release();
  const ev = await ModelEvaluator.create(
    model.graph,
    { name: model.graph.inputs[0].name, shape: inputShape, size: x.length },
    { name, shape, size },
    { threads: 1, file: modelFile },
  );
  const mc = await monteCarloMoments((b, c) => ev.evaluate(b, c), size, Float64Array.from(x), noise, { samples: Number(samples), batchSize: 1000, seed: 5 });
  const q = [];
  const e = [];
  for (let i = 0; i < size; i++) {
    if (mc.variance[i] < 1e-6 * (1 + Math.abs(mc.mean[i]))) continue;
    q.push(p.variance[i] / mc.variance[i]);
    e.push(Math.abs(p.mean[i] - mc.mean[i]) / Math.sqrt(mc.variance[i]));
  }
  q.sort((a, b) => a - b);
  e.sort((a, b) => a - b);
  const pct = (a, f) => a[Math.floor(f * (a.length - 1))].toFixed(3);
  console.log(
    `${name} [${shape}] ${q.length}/${size} units: var/MC p1 ${pct(q, 0.01)} p10 ${pct(q, 0.1)} median ${pct(q, 0.5)} p90 ${pct(q, 0.9)} p99 ${pct(q, 0.99)}; mean err median ${pct(e, 0.5)} p99 ${pct(e, 0.99)}`,
  );
}
