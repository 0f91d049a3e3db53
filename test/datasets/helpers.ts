/** Shared by the dataset tests: small datasets, the CLI run in the background, CSV and a strict XML check. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodeNpy, parseNpy } from '../../src/data/npy.js';
import { writeFileSync } from 'node:fs';
import { BIN, ROOT } from '../helpers/cli.js';

export function tmp(prefix = 'nm-data-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** The first `count` bundled MNIST digits (model units) and labels, written under `dir`. */
export function digits(dir: string, count: number): { data: string; labels: string } {
  const x = parseNpy(readFileSync(join(ROOT, 'fixtures/mnist/digits-100.npy')));
  const y = parseNpy(readFileSync(join(ROOT, 'fixtures/mnist/labels-100.npy')));
  const data = join(dir, `digits-${count}.npy`);
  const labels = join(dir, `labels-${count}.npy`);
  writeFileSync(data, encodeNpy((x.data as Float32Array).slice(0, count * 784), [count, 1, 28, 28]));
  writeFileSync(labels, encodeNpy((y.data as BigInt64Array).slice(0, count), [count]));
  return { data, labels };
}

/** `count` seeded random inputs for fixtures/residual.onnx ([1, 8, 8], 3 classes) with labels i mod 3. */
export function residualData(dir: string, count: number, seed = 1): { data: string; labels: string } {
  let s = seed >>> 0;
  const next = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296) * 2 - 1;
  const x = Float32Array.from({ length: count * 64 }, next);
  const data = join(dir, `res-${count}.npy`);
  const labels = join(dir, `res-${count}-labels.npy`);
  writeFileSync(data, encodeNpy(x, [count, 1, 8, 8]));
  writeFileSync(
    labels,
    encodeNpy(
      BigInt64Array.from({ length: count }, (_, i) => BigInt(i % 3)),
      [count],
    ),
  );
  return { data, labels };
}

/** Start the CLI in the background. */
export function startCli(
  args: string[],
  env: Record<string, string> = {},
): { child: ChildProcess; done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }> } {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, stderr })),
  );
  return { child, done };
}

export async function waitFor(cond: () => boolean, timeoutMs: number, stepMs = 20): Promise<boolean> {
  const t0 = Date.now();
  while (Date.now() - t0 < timeoutMs) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, stepMs));
  }
  return cond();
}

/** samples.csv as objects (empty fields are null). */
export function readCsv(path: string): Record<string, number | null>[] {
  const [head, ...rows] = readFileSync(path, 'utf8').trim().split('\n');
  const cols = head.split(',');
  return rows.map((r) => Object.fromEntries(r.split(',').map((v, i) => [cols[i], v === '' ? null : Number(v)])));
}

export interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlElement[];
  text: string;
}

/**
 * A strict parser for the XML subset JUnit files use (declaration, elements, attributes in double
 * quotes, text, the five predefined entities and numeric references). Throws on anything
 * malformed: unbalanced or misnested tags, unescaped < or &, duplicate attributes, trailing content.
 */
export function parseXml(text: string): XmlElement {
  let i = 0;
  const fail = (m: string): never => {
    throw new Error(`XML: ${m} at offset ${i}: ${JSON.stringify(text.slice(i, i + 40))}`);
  };
  const decode = (s: string): string => {
    if (/[<]/.test(s)) fail('unescaped <');
    return s.replace(/&(#x[0-9a-fA-F]+|#\d+|[a-z]+);|&/g, (m, e: string | undefined) => {
      if (!e) return fail('bare &');
      if (e.startsWith('#x')) return String.fromCodePoint(parseInt(e.slice(2), 16));
      if (e.startsWith('#')) return String.fromCodePoint(parseInt(e.slice(1), 10));
      const map: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
      return map[e] ?? fail(`unknown entity &${e};`);
    });
  };
  const ws = () => {
    while (i < text.length && /\s/.test(text[i])) i++;
  };
  if (text.startsWith('<?xml')) {
    const e = text.indexOf('?>');
    if (e < 0) fail('unterminated declaration');
    i = e + 2;
  }
  ws();
  const element = (): XmlElement => {
    if (text[i] !== '<') fail('expected <');
    i++;
    const nm = /^[A-Za-z_][\w.-]*/.exec(text.slice(i));
    if (!nm) return fail('bad element name');
    const el: XmlElement = { name: nm[0], attrs: {}, children: [], text: '' };
    i += nm[0].length;
    for (;;) {
      ws();
      if (text.startsWith('/>', i)) {
        i += 2;
        return el;
      }
      if (text[i] === '>') {
        i++;
        break;
      }
      const an = /^([A-Za-z_][\w.:-]*)="([^"]*)"/.exec(text.slice(i));
      if (!an) return fail('bad attribute');
      if (an[1] in el.attrs) fail(`duplicate attribute ${an[1]}`);
      el.attrs[an[1]] = decode(an[2]);
      i += an[0].length;
    }
    for (;;) {
      const lt = text.indexOf('<', i);
      if (lt < 0) fail(`unclosed <${el.name}>`);
      el.text += decode(text.slice(i, lt));
      i = lt;
      if (text.startsWith('</', i)) {
        const close = `</${el.name}>`;
        if (!text.startsWith(close, i)) fail(`expected ${close}`);
        i += close.length;
        return el;
      }
      el.children.push(element());
    }
  };
  const root = element();
  ws();
  if (i !== text.length) fail('content after the root element');
  return root;
}

export function find(el: XmlElement, name: string): XmlElement[] {
  return [...(el.name === name ? [el] : []), ...el.children.flatMap((c) => find(c, name))];
}
