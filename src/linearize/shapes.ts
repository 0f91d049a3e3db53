/**
 * Static shapes of every tensor of a model part at batch 1, from one probe run at the zero input
 * (src/onnx/shapes.ts; the graphs we linearize have no data-dependent shapes). The tangent builder
 * uses them to check axes and skip needless broadcasts, and the Jacobian engine to size its chunks.
 * One one-run session (runOnce: its large weights fed as inputs, src/onnx/shapes.ts), created and
 * released once per engine. Undefined when the part cannot be probed (the rules then work from
 * run-time shapes alone).
 */
import type { Graph } from '../onnx/graph.js';
import { runWithIntermediates, zeroFeeds } from '../onnx/shapes.js';

export async function probeShapes(graph: Graph, options: { threads?: number } = {}): Promise<Map<string, number[]> | undefined> {
  try {
    const feeds = zeroFeeds(graph, 1);
    const result = await runWithIntermediates(graph, feeds, 'all', { threads: options.threads, runOnce: true });
    const shapes = new Map<string, number[]>();
    for (const [name, t] of graph.initializers) shapes.set(name, [...t.dims]);
    for (const [name, t] of Object.entries({ ...feeds, ...result })) shapes.set(name, [...t.dims]);
    return shapes;
  } catch {
    return undefined;
  }
}
