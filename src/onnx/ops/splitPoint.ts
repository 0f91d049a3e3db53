/**
 * Which ops a model can be split at (the cut of the two-stage linearization): the unit-wise
 * piecewise-linear ops of the default domain, Relu, LeakyRelu, PRelu and Clip (ReLU6); their
 * pieces are in splitPieces.ts. A leaf module so that the Graph IR (graph.ts `relus`) and the
 * loader's checks can ask without importing the op rules; registry.ts re-exports it.
 */
import { isDefaultDomain } from './domain.js';

const SPLIT_POINT_OPS: ReadonlySet<string> = new Set(['Relu', 'LeakyRelu', 'PRelu', 'Clip']);

/** Is a node of this op type and domain a split point? (Nodes of nested subgraphs pass their proto fields.) */
export function isSplitPoint(opType: string | null | undefined, domain: string | null | undefined): boolean {
  return !!opType && SPLIT_POINT_OPS.has(opType) && isDefaultDomain(domain);
}
