/**
 * Static shapes of every tensor of a model part at batch 1, from one probe run at the zero input
 * (src/onnx/shapes.ts; the graphs we linearize have no data-dependent shapes). The tangent builder
 * uses them to check axes and skip needless broadcasts, and the Jacobian engine to size its chunks.
 * One session, created and released once per engine. Undefined when the part cannot be probed
 * (the rules then work from run-time shapes alone).
 *
 * The probe needs the weights' dims, not their values: large float weights that no shape can depend
 * on (see PROBE_ZERO_SLOTS) become graph inputs fed with zeros, so that the probe's session neither
 * serializes nor copies them (AlexNet: 244 MB of weights, 0.6-0.8 CPU s to make the probe's
 * session with them). A zero array the probe only reads costs no memory of its own.
 */
import type { Graph } from '../onnx/graph.js';
import { DataType } from '../onnx/proto.js';
import type { HostTensor } from '../runtime/session.js';
import { runWithIntermediates, zeroFeeds } from '../onnx/shapes.js';

/** Float initializers of at least this many elements (1 MiB) are fed as zeros to the probe. */
const PROBE_ZERO_ELEMENTS = 2 ** 18;

/**
 * Ops whose outputs' shapes follow their float inputs' dims only, never their values (unlike
 * Resize's scales or Range's limits): a weight read by these alone can be fed as zeros.
 */
const PROBE_ZERO_SLOTS = new Set([
  'Conv',
  'ConvTranspose',
  'Gemm',
  'MatMul',
  'BatchNormalization',
  'InstanceNormalization',
  'LayerNormalization',
  'Add',
  'Sub',
  'Mul',
  'Div',
  'PRelu',
]);

/** The graph with its large shape-neutral float weights turned into inputs, and zero feeds for them. */
function withZeroWeights(graph: Graph): { graph: Graph; feeds: Record<string, HostTensor> } {
  const feeds: Record<string, HostTensor> = {};
  const consumers = new Map<string, string[]>();
  for (const n of graph.nodes) for (const x of n.inputs) if (x) consumers.set(x, [...(consumers.get(x) ?? []), n.opType]);
  const g = graph.clone();
  for (const [name, t] of graph.initializers) {
    const size = t.dims.reduce((a, d) => a * d, 1);
    const ops = consumers.get(name) ?? [];
    if (t.dataType !== DataType.FLOAT || size < PROBE_ZERO_ELEMENTS || ops.length === 0 || !ops.every((op) => PROBE_ZERO_SLOTS.has(op))) continue;
    if (graph.outputs.some((o) => o.name === name)) continue;
    g.initializers.delete(name);
    const listed = g.inputs.find((i) => i.name === name); // IR 3 lists initializers as inputs too
    if (listed) Object.assign(listed, { elemType: DataType.FLOAT, shape: [...t.dims] });
    else g.inputs.push({ name, elemType: DataType.FLOAT, shape: [...t.dims] });
    feeds[name] = { type: 'float32', data: new Float32Array(size), dims: [...t.dims] };
  }
  return { graph: g, feeds };
}

export async function probeShapes(graph: Graph, options: { threads?: number } = {}): Promise<Map<string, number[]> | undefined> {
  try {
    const feeds = zeroFeeds(graph, 1);
    const probe = withZeroWeights(graph);
    const result = await runWithIntermediates(probe.graph, { ...feeds, ...probe.feeds }, 'all', { threads: options.threads, runOnce: true });
    const shapes = new Map<string, number[]>();
    for (const [name, t] of graph.initializers) shapes.set(name, [...t.dims]);
    for (const [name, t] of Object.entries({ ...feeds, ...result })) shapes.set(name, [...t.dims]);
    return shapes;
  } catch {
    return undefined;
  }
}
