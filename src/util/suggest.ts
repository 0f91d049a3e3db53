/** "Did you mean" suggestions: the known name closest to a mistyped one by edit distance. */

/**
 * Optimal string alignment distance (Levenshtein with adjacent transpositions; Damerau 1964):
 * the fewest insertions, deletions, substitutions and swaps of two adjacent characters that turn
 * a into b. O(|a| |b|) time, three rows of memory.
 */
export function editDistance(a: string, b: string): number {
  let prev2 = new Array<number>(b.length + 1).fill(0);
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = new Array<number>(b.length + 1);
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j], prev2[j - 2] + 1);
    }
    prev2 = prev;
    prev = row;
  }
  return prev[b.length];
}

/**
 * The candidate closest to `word`, when it is close enough to be a typo: at most a third of the
 * longer name's length in edits (at least 1), or `word` a prefix of exactly one candidate (at least 3 characters long),
 * or exactly one candidate the first dash-separated part(s) of `word` (--out-dir where only --out exists).
 * Ties go to the first candidate in the given order.
 */
export function closestName(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(word, c);
    if (d < bestDistance && d <= Math.max(1, Math.floor(Math.max(word.length, c.length) / 3))) {
      best = c;
      bestDistance = d;
    }
  }
  if (best !== undefined) return best;
  const prefixed = word.length >= 3 ? candidates.filter((c) => c.startsWith(word)) : [];
  if (prefixed.length === 1) return prefixed[0];
  const heads = candidates.filter((c) => c.length >= 3 && word.startsWith(`${c}-`));
  return heads.length === 1 ? heads[0] : undefined;
}
