/** Index helpers over score vectors (class scores, logits). */

/**
 * The index (relative to `offset`) of the largest of v[offset .. offset + d - 1]; the first one on
 * ties, 0 when d is 0. NaN never wins.
 */
export function argmax(v: ArrayLike<number>, offset = 0, d = v.length - offset): number {
  let best = 0;
  for (let i = 1; i < d; i++) if (v[offset + i] > v[offset + best]) best = i;
  return best;
}

/** The indices of the k largest values, largest first (ties: lower index first). */
export function topK(v: ArrayLike<number>, k: number): number[] {
  return Array.from({ length: v.length }, (_, i) => i)
    .sort((a, b) => v[b] - v[a] || a - b)
    .slice(0, Math.max(0, k));
}
