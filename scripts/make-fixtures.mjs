#!/usr/bin/env node
// Writes the synthetic ONNX fixtures (fixtures/<name>.onnx) from the seeded builder in
// src/synthetic/. Needs the compiled library: `npm run build && node scripts/make-fixtures.mjs`.
// Deterministic: running it twice gives identical bytes.
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeSyntheticFixtures } from '../dist/synthetic/index.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = process.argv[2] ?? join(root, 'fixtures');
for (const p of writeSyntheticFixtures(outDir)) console.log(`wrote ${relative(process.cwd(), p)}`);
