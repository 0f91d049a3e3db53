/**
 * Clip: T inside the open interval (min, max), 0 outside and at the bounds. min/max are attributes
 * before opset 11 and optional inputs from opset 11 on.
 */
import { attrFloat, graphConstant, hasAttr, type Graph, type GraphNode } from '../graph.js';
import type { TangentRule } from '../tangent/types.js';
import type { OpDefinition } from './types.js';
import { selfAdjoint } from './adjointHelpers.js';
import { onlyData } from './tangentChecks.js';

const clipTangent: TangentRule = (c) => {
  const t = onlyData(c, 'the data input (min and max must not vary)');
  let lo: string | undefined;
  let hi: string | undefined;
  if (c.opset < 11) {
    if (hasAttr(c.node, 'min')) lo = c.b.scalar(attrFloat(c.node, 'min', 0));
    if (hasAttr(c.node, 'max')) hi = c.b.scalar(attrFloat(c.node, 'max', 0));
  } else {
    lo = c.x(1) || undefined;
    hi = c.x(2) || undefined;
  }
  const masks: string[] = [];
  if (lo) masks.push(c.b.floatMask(c.b.op('Greater', [c.x(0), lo])));
  if (hi) masks.push(c.b.floatMask(c.b.op('Less', [c.x(0), hi])));
  if (masks.length === 0) return [t];
  const mask = masks.length === 1 ? masks[0] : c.b.op('Mul', masks);
  return [c.b.op('Mul', [t, mask])];
};

/**
 * The bounds of a Clip node: min and max from attributes (opset < 11) or constant inputs (an
 * initializer or a Constant node; opset >= 11), a missing (or infinite) bound being none.
 * Undefined when a bound is computed at run time.
 */
export function clipBounds(graph: Graph, node: GraphNode): { min?: number; max?: number } | undefined {
  const bounds: { min?: number; max?: number } = {};
  if (graph.opset < 11) {
    // opset 6 defaults are -/+ the largest float32: no kink there
    for (const name of ['min', 'max'] as const) if (hasAttr(node, name) && Math.abs(attrFloat(node, name, 0)) < 3.4e38) bounds[name] = attrFloat(node, name, 0);
  } else {
    const names = ['min', 'max'] as const;
    for (let i = 0; i < 2; i++) {
      const name = node.inputs[i + 1];
      if (!name) continue;
      const t = graphConstant(graph, name);
      if (!t || t.data.length !== 1) return undefined;
      const v = Number(t.data[0]);
      if (Number.isFinite(v)) bounds[names[i]] = v;
    }
  }
  return bounds;
}

/** The kinks of a Clip node: its bounds (clipBounds), sorted; undefined when a bound is computed at run time. */
export function clipKinks(graph: Graph, node: GraphNode): number[] | undefined {
  const b = clipBounds(graph, node);
  if (!b) return undefined;
  return [b.min, b.max].filter((v): v is number => v !== undefined).sort((a, c) => a - c);
}

/** Slope 1 between min and max and 0 outside: kinks at the bounds it has (none: no kinks). */
export const clip: OpDefinition = {
  tangent: clipTangent,
  adjoint: selfAdjoint(clipTangent),
  kinks: (graph, node) => {
    const at = clipKinks(graph, node);
    return at && at.length > 0 ? { kind: 'unit', at } : undefined;
  },
};
