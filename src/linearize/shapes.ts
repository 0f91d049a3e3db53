/**
 * Static shapes of every tensor of a graph at batch 1, from one probe run of the forward model at
 * the zero input (the graphs we linearize have no data-dependent shapes). The tangent builder uses
 * them to check axes and skip needless broadcasts, and the Jacobian engine to size its chunks. One
 * session, created and released once per engine.
 */
import type { Graph } from '../onnx/graph.js';
import { DataType } from '../onnx/proto.js';
import { perSampleDims } from '../onnx/tangent/build.js';
import { ModelSession, type HostTensor } from '../runtime/session.js';

export async function probeShapes(graph: Graph, options: { threads?: number } = {}): Promise<Map<string, number[]> | undefined> {
  const g = graph.clone();
  const feeds: Record<string, HostTensor> = {};
  try {
    g.sortTopologically();
    for (const inp of g.dataInputs) {
      if (inp.elemType !== DataType.FLOAT) return undefined;
      const dims = [1, ...perSampleDims(inp)];
      inp.shape = dims;
      feeds[inp.name] = { type: 'float32', data: new Float32Array(dims.reduce((a, d) => a * d, 1)), dims };
    }
    const seen = new Set<string>();
    g.outputs = [];
    for (const n of g.nodes) {
      for (const o of n.outputs) {
        if (!o || seen.has(o)) continue;
        seen.add(o);
        g.outputs.push({ name: o, elemType: 0 });
      }
    }
    g.valueInfo.clear();
  } catch {
    return undefined;
  }
  let session: ModelSession | undefined;
  try {
    session = await ModelSession.create(g.toBytes(), { threads: options.threads });
    const out = await session.run(feeds);
    const shapes = new Map<string, number[]>();
    for (const [name, t] of Object.entries(out)) shapes.set(name, t.dims);
    for (const [name, t] of Object.entries(feeds)) shapes.set(name, t.dims);
    for (const [name, t] of g.initializers) shapes.set(name, t.dims);
    return shapes;
  } catch {
    return undefined;
  } finally {
    await session?.release();
  }
}
