/**
 * Writes the synthetic fixtures (fixtures/<name>.onnx). Deterministic: the same bytes every run.
 * Run through scripts/make-fixtures.mjs after `npm run build`.
 */
import { join } from 'node:path';
import { writeFileAtomic } from '../util/files.js';
import { fixtureNets } from './nets.js';

/** Write every synthetic fixture into `dir`; returns the paths written. */
export function writeSyntheticFixtures(dir: string): string[] {
  const written: string[] = [];
  for (const net of fixtureNets()) {
    const path = join(dir, `${net.name}.onnx`);
    writeFileAtomic(path, net.bytes);
    written.push(path);
  }
  return written;
}
