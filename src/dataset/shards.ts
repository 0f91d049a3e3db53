/**
 * Shards: shard I of N owns whole chunks, chunks floor(I C / N) .. floor((I + 1) C / N) - 1 of C,
 * so every chunk is computed the same way in an unsharded and a sharded run (src/dataset/merge.ts
 * joins the shards' records back into the unsharded report).
 */
import { NetmomentsError } from '../errors.js';

/** Parse `I/N` (0-based shard I of N). */
export function parseShard(text: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(text.trim());
  const bad = () => new NetmomentsError(`--shard expects I/N with 0 <= I < N (0-based, e.g. 0/4 .. 3/4), got '${text}'`, { code: 'BAD_USAGE' });
  if (!m) throw bad();
  const index = Number(m[1]);
  const count = Number(m[2]);
  if (!(count >= 1 && index < count)) throw bad();
  return { index, count };
}

/** The chunks of shard I of N among C chunks. */
export function shardChunks(chunks: number, shard?: { index: number; count: number }): number[] {
  if (!shard) return Array.from({ length: chunks }, (_, c) => c);
  const a = Math.floor((shard.index * chunks) / shard.count);
  const b = Math.floor(((shard.index + 1) * chunks) / shard.count);
  return Array.from({ length: b - a }, (_, t) => a + t);
}
