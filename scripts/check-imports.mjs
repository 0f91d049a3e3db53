#!/usr/bin/env node
/**
 * Import-cycle check (docs/ARCHITECTURE.md, section 2): fails when the relative imports of src/
 * (type-only imports included) form a cycle between files, or between top-level folders of src/
 * (a file directly in src/ counts as its own folder). Node built-ins only; run by `npm test`.
 *
 *   node scripts/check-imports.mjs [ROOT]      (default src)
 */
import fs from 'node:fs';
import path from 'node:path';

const root = path.resolve(process.argv[2] ?? 'src');

function sourceFiles(dir) {
  const out = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (p.endsWith('.ts') && !p.endsWith('.d.ts')) out.push(p);
  }
  return out.sort();
}

/** Relative import and re-export targets of one file, resolved to .ts paths. */
function importsOf(file) {
  const text = fs.readFileSync(file, 'utf8');
  const re = /(?:^|[\s;])(?:import|export)\s+(?:type\s+)?(?:[^'";]*?\s+from\s+)?['"](\.{1,2}\/[^'"]+)['"]/gm;
  const out = [];
  for (let m = re.exec(text); m; m = re.exec(text)) {
    let target = path.resolve(path.dirname(file), m[1]);
    if (target.endsWith('.js')) target = target.slice(0, -3) + '.ts';
    else if (!target.endsWith('.ts')) target = fs.existsSync(target + '.ts') ? target + '.ts' : path.join(target, 'index.ts');
    out.push(target);
  }
  return out;
}

/** Strongly connected components with more than one member (Tarjan), or a self-loop. */
function cycles(graph) {
  let counter = 0;
  const index = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const found = [];
  const visit = (v) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v), low.get(w)));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v), index.get(w)));
    }
    if (low.get(v) === index.get(v)) {
      const members = [];
      let w;
      do {
        w = stack.pop();
        onStack.delete(w);
        members.push(w);
      } while (w !== v);
      if (members.length > 1 || (graph.get(v) ?? new Set()).has(v)) found.push(members.sort());
    }
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);
  return found;
}

const files = sourceFiles(root);
const fileGraph = new Map(files.map((f) => [f, new Set(importsOf(f))]));
const folderOf = (f) => {
  const parts = path.relative(root, f).split(path.sep);
  return parts.length > 1 ? parts[0] + '/' : parts[0];
};
const folderGraph = new Map();
for (const [f, targets] of fileGraph) {
  const a = folderOf(f);
  if (!folderGraph.has(a)) folderGraph.set(a, new Set());
  for (const t of targets) if (folderOf(t) !== a) folderGraph.get(a).add(folderOf(t));
}
const rel = (f) => path.relative(process.cwd(), f);
const fileCycles = cycles(fileGraph);
const folderCycles = cycles(folderGraph);
for (const c of fileCycles) console.error(`import cycle between files: ${c.map(rel).join(' -> ')}`);
for (const c of folderCycles) {
  const edges = [];
  for (const a of c) for (const b of folderGraph.get(a)) if (c.includes(b)) edges.push(`${a} -> ${b}`);
  console.error(`import cycle between folders of ${rel(root)}: ${edges.join(', ')}`);
}
if (fileCycles.length + folderCycles.length > 0) process.exit(1);
console.log(`imports: no cycles among ${files.length} files and ${folderGraph.size} folders of ${rel(root) || '.'}`);
