/** Checks shared by the rules: which inputs may vary, and whether an axis is the batch axis. */
import type { RuleContext } from '../tangent/types.js';

/** The rule differentiates only input 0: any other varying input is unsupported. Returns t(0). */
export function onlyData(c: RuleContext, what = 'input 0'): string {
  for (let i = 1; i < c.node.inputs.length; i++) {
    if (c.t(i)) c.unsupported(`input ${i} ('${c.x(i)}') varies; only ${what} may`);
  }
  const t = c.t(0);
  if (!t) c.unsupported('its data input does not vary but another input does');
  return t;
}

/**
 * Is `axis` (of a tensor of primal `name`) the batch axis 0? Negative axes count from the end;
 * when the rank is unknown a negative axis is taken to be a trailing (non-batch) axis.
 */
export function isBatchAxis(c: RuleContext, axis: number, name: string): boolean {
  if (axis === 0) return true;
  if (axis > 0) return false;
  const r = c.b.rank(name);
  return r !== undefined && r + axis === 0;
}

/** The tangent convention needs the primal output's leading dimension to be the batch of 1. */
export function requireBatchOne(c: RuleContext, output: string): void {
  const s = c.b.shape(output);
  if (s && s.length > 0 && s[0] !== 1) {
    c.unsupported(`its output '${output}' has leading dimension ${s[0]} where the batch of 1 should be (the op moves the batch axis)`);
  }
  if (s && s.length === 0) c.unsupported(`its output '${output}' is a scalar (the op removes the batch axis)`);
}

/** A varying operand of a broadcasting op must have the output's rank (so its batch axis stays axis 0). */
export function requireSameRank(c: RuleContext, input: string, output: string): void {
  const a = c.b.rank(input);
  const y = c.b.rank(output);
  if (a !== undefined && y !== undefined && a !== y) {
    c.unsupported(`varying operand '${input}' has rank ${a} but the output has rank ${y} (broadcasting would move its batch axis)`);
  }
}
