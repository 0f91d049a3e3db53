/**
 * Mutations of real fixture bytes for the fuzz test (test/fuzz/fuzz.test.ts, test/fuzz/worker.mjs).
 * Plain JavaScript so that the worker processes run it without a TypeScript loader.
 *
 * A mutation is a list of operations, each { op, a, b, c } with a, b, c unsigned 32-bit choices
 * (fast-check generates them), applied in order to the bytes. Everything is deterministic: the
 * same fixture and operations give the same bytes, in the test process and in a worker.
 *
 * ONNX files are protobuf. Byte-level operations break the framing (bit flips, interesting bytes,
 * truncation, splices from another fixture, deletions, length varints rewritten in place so that a
 * submessage runs past its parent's end). Tree-level operations parse the wire format (a
 * length-delimited field whose payload parses completely as fields is taken for a submessage) and
 * re-encode it with consistent lengths, so the file stays well-formed protobuf with hostile
 * contents: varints set to 0, -1, 2^31, 2^63 (dims, data types, IR version, attribute ints),
 * fields deleted, duplicated or grafted from another fixture, strings replaced ('..', absolute
 * paths, op names), bytes payloads cut short (raw_data shorter than the dims), wire types changed,
 * and control-flow nodes nested deep with a ReLU at the bottom.
 *
 * .npy files: byte-level operations biased towards the header, and header-aware ones (the shape,
 * descr, fortran_order text, the header length field, the version byte, special float values in
 * the data).
 */

// ---------------------------------------------------------------------------------------------
// protobuf wire format

function readVarint(b, pos, end) {
  let v = 0n;
  let shift = 0n;
  for (let i = 0; i < 10; i++) {
    if (pos + i >= end) return null;
    const byte = b[pos + i];
    v |= BigInt(byte & 0x7f) << shift;
    if ((byte & 0x80) === 0) return { value: v, next: pos + i + 1 };
    shift += 7n;
  }
  return null;
}

export function encodeVarint(v) {
  let x = BigInt.asUintN(64, BigInt(v));
  const out = [];
  do {
    let byte = Number(x & 0x7fn);
    x >>= 7n;
    if (x > 0n) byte |= 0x80;
    out.push(byte);
  } while (x > 0n);
  return Uint8Array.from(out);
}

/**
 * Parse fields in b[start, end). Returns null unless the range parses completely. A field:
 * { no, wt, start, end, value (varint, BigInt), payload: [s, e) (length-delimited), children (submessage) }.
 */
export function parseFields(b, start, end, depth = 0) {
  const fields = [];
  let pos = start;
  while (pos < end) {
    const tag = readVarint(b, pos, end);
    if (!tag || tag.value === 0n || tag.value > 0xffffffffn) return null;
    const no = Number(tag.value >> 3n);
    const wt = Number(tag.value & 7n);
    const f = { no, wt, start: pos, end: 0 };
    pos = tag.next;
    if (wt === 0) {
      const v = readVarint(b, pos, end);
      if (!v) return null;
      f.value = v.value;
      pos = v.next;
    } else if (wt === 1 || wt === 5) {
      const w = wt === 1 ? 8 : 4;
      if (pos + w > end) return null;
      f.payload = [pos, pos + w];
      pos += w;
    } else if (wt === 2) {
      const len = readVarint(b, pos, end);
      if (!len || len.value > BigInt(end - len.next)) return null;
      f.lenPos = [pos, len.next];
      const s = len.next;
      const e = s + Number(len.value);
      f.payload = [s, e];
      if (depth < 24 && e > s) {
        const kids = parseFields(b, s, e, depth + 1);
        if (kids && kids.length > 0) f.children = kids;
      }
      pos = e;
    } else return null;
    f.end = pos;
    fields.push(f);
  }
  return fields;
}

/** Every field of a tree, depth first, with its parent list and depth. */
export function flatten(fields, out = [], parent = null, depth = 0) {
  for (let i = 0; i < fields.length; i++) {
    const f = fields[i];
    out.push({ f, list: fields, index: i, parent, depth });
    if (f.children) flatten(f.children, out, f, depth + 1);
  }
  return out;
}

/** Encode a (possibly edited) tree; untouched fields are copied from `src`. */
export function encodeFields(fields, src) {
  const parts = [];
  // a grafted field (wt -1) keeps its donor encoding, tag included
  for (const f of fields) parts.push(f.wt === -1 ? f.rawBytes : encodeField(f, src));
  return concat(parts);
}

function encodeField(f, src) {
  if (!f.dirty && src) return src.subarray(f.start, f.end);
  const tag = encodeVarint((BigInt(f.no) << 3n) | BigInt(f.wt));
  if (f.wt === 0) return concat([tag, encodeVarint(f.value ?? 0n)]);
  let body;
  if (f.children && f.childrenDirty !== false) body = encodeFields(f.children, src);
  else if (f.bytes) body = f.bytes;
  else if (f.payload && src) body = src.subarray(f.payload[0], f.payload[1]);
  else body = new Uint8Array(0);
  if (f.wt === 1 || f.wt === 5) {
    const w = f.wt === 1 ? 8 : 4;
    const fixed = new Uint8Array(w);
    fixed.set(body.subarray(0, w));
    return concat([tag, fixed]);
  }
  return concat([tag, encodeVarint(body.length), body]);
}

export function concat(parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function markDirty(entry, flat) {
  // mark the field and every ancestor dirty so they are re-encoded with new lengths
  let f = entry.f;
  f.dirty = true;
  let parent = entry.parent;
  while (parent) {
    parent.dirty = true;
    const pe = flat.find((x) => x.f === parent);
    parent = pe ? pe.parent : null;
  }
}

function markListDirty(parent, flat) {
  if (!parent) return;
  const pe = flat.find((x) => x.f === parent);
  if (pe) markDirty(pe, flat);
}

// ---------------------------------------------------------------------------------------------
// choices

const INTERESTING_BYTES = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x08, 0x10, 0x12, 0x1a, 0x22, 0x3a, 0x0a];
const INTERESTING_INTS = [
  0n,
  1n,
  2n,
  3n,
  7n,
  10n,
  11n,
  13n,
  16n,
  255n,
  65535n,
  2n ** 31n - 1n,
  2n ** 31n,
  2n ** 32n - 1n,
  2n ** 32n,
  2n ** 53n,
  2n ** 63n - 1n,
  2n ** 64n - 1n /* -1 */,
  2n ** 64n - 4n /* -4 */,
  2n ** 64n - 2n ** 31n /* -2^31 */,
  28n,
  100000n,
];
const INTERESTING_STRINGS = [
  '',
  '..',
  '../x.bin',
  '../../../../etc/passwd',
  '/etc/passwd',
  'C:\\Windows\\win.ini',
  '\\\\server\\share',
  'sub/../../x',
  'Relu',
  'If',
  'Loop',
  'Scan',
  'MaxPool',
  'Conv',
  'Softmax',
  'QLinearConv',
  'DequantizeLinear',
  'com.microsoft',
  'ai.onnx',
  'ai.onnx.ml',
  'x',
  'y',
  'N',
  '-1',
  'location',
  'offset',
  'length',
  'external.bin',
  'a\u0000b',
  'x'.repeat(300),
  '\u00ff\u00fe',
];
const SPECIAL_F32 = [NaN, Infinity, -Infinity, 3.4e38, -3.4e38, 1e30, -0, 1.4e-45, 1e-38, 0];
const SPECIAL_F64 = [NaN, Infinity, -Infinity, 1.7e308, -1.7e308, 1e200, -0, 5e-324, 0, -1];

const pick = (arr, v) => arr[v % arr.length];

/** A 32-bit PRNG (mulberry32) for choices inside one operation. */
function prng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

// ---------------------------------------------------------------------------------------------
// ONNX

/** Operation names, weighted: most keep the protobuf well-formed so that cases get past the decoder. */
export const ONNX_OPS = [
  'flip',
  'flip',
  'byte',
  'truncate',
  'splice',
  'delete',
  'length',
  'length',
  'tree.varint',
  'tree.varint',
  'tree.varint',
  'tree.varint',
  'tree.varint',
  'tree.varint',
  'tree.delete',
  'tree.delete',
  'tree.dup',
  'tree.graft',
  'tree.string',
  'tree.string',
  'tree.string',
  'tree.cutbytes',
  'tree.wiretype',
  'tree.nest',
  'tree.dtype',
  'tree.dtype',
  'tree.float',
  'tree.float',
];

/** Byte offsets outside large opaque payloads (weights), where a flip changes structure. */
function structuralPositions(bytes, tree) {
  const out = [];
  const walk = (fields) => {
    for (const f of fields) {
      const stop = f.payload && !f.children ? f.payload[0] : f.end;
      for (let p = f.start; p < Math.min(stop, f.start + 16); p++) out.push(p);
      if (f.payload && !f.children && f.payload[1] - f.payload[0] <= 64) for (let p = f.payload[0]; p < f.payload[1]; p++) out.push(p);
      if (f.children) walk(f.children);
    }
  };
  if (tree) walk(tree);
  return out.length > 0 ? out : [0];
}

function byteLevel(bytes, op, donors) {
  const { a, b, c } = op;
  const len = bytes.length;
  if (len === 0) return bytes;
  switch (op.op) {
    case 'flip': {
      const tree = parseFields(bytes, 0, len);
      const positions = c % 5 === 0 || !tree ? null : structuralPositions(bytes, tree);
      const pos = positions ? pick(positions, a) : a % len;
      const out = Uint8Array.from(bytes);
      out[pos] ^= 1 << (b % 8);
      return out;
    }
    case 'byte': {
      const tree = parseFields(bytes, 0, len);
      const positions = tree ? structuralPositions(bytes, tree) : null;
      const pos = positions && c % 4 !== 0 ? pick(positions, a) : a % len;
      const out = Uint8Array.from(bytes);
      out[pos] = pick(INTERESTING_BYTES, b);
      return out;
    }
    case 'truncate':
      return bytes.slice(0, a % len);
    case 'splice': {
      const donor = donors.length > 0 ? pick(donors, b) : bytes;
      const from = c % Math.max(1, donor.length);
      const n = 1 + ((c >>> 20) % 512);
      const chunk = donor.subarray(from, Math.min(donor.length, from + n));
      const at = a % (len + 1);
      return b % 2 === 0
        ? concat([bytes.subarray(0, at), chunk, bytes.subarray(at)])
        : concat([bytes.subarray(0, at), chunk, bytes.subarray(Math.min(len, at + chunk.length))]);
    }
    case 'delete': {
      const at = a % len;
      const n = 1 + (b % 64);
      return concat([bytes.subarray(0, at), bytes.subarray(Math.min(len, at + n))]);
    }
    case 'length': {
      const tree = parseFields(bytes, 0, len);
      if (!tree) return byteLevel(bytes, { ...op, op: 'flip' }, donors);
      const lens = flatten(tree).filter((e) => e.f.lenPos);
      if (lens.length === 0) return bytes;
      const e = pick(lens, a);
      const [s, t] = e.f.lenPos;
      const v = BigInt(e.f.payload[1] - e.f.payload[0]);
      const remaining = BigInt(len - t);
      const choices = [0n, v - 1n, v + 1n, v * 2n, remaining + 1n, v + 100n, 2n ** 31n - 1n, 2n ** 32n, 2n ** 35n, 2n ** 63n - 1n];
      let nv = pick(choices, b);
      if (nv < 0n) nv = 0n;
      return concat([bytes.subarray(0, s), encodeVarint(nv), bytes.subarray(t)]);
    }
  }
  return bytes;
}

/** ModelProto.graph = 7, GraphProto.node = 1; build a NodeProto as fields. */
function strField(no, s) {
  return { no, wt: 2, dirty: true, bytes: new TextEncoder().encode(s) };
}
function msgField(no, children) {
  return { no, wt: 2, dirty: true, children };
}
function intField(no, v) {
  return { no, wt: 0, dirty: true, value: BigInt(v) };
}

/** An If node whose then_branch holds an If ... `depth` levels down to a Relu. */
function nestedIf(depth, input) {
  let inner = msgField(1, [strField(1, input), strField(2, 'nested_relu_out'), strField(3, 'nested_relu'), strField(4, 'Relu')]);
  for (let i = 0; i < depth; i++) {
    const graph = msgField(6, [inner, strField(2, `body${i}`), msgField(12, [strField(1, i === 0 ? 'nested_relu_out' : `if_out${i - 1}`)])]);
    const attr = msgField(5, [strField(1, 'then_branch'), graph, intField(20, 5)]);
    // the else branch stays small (a copy of the nested one would double the size per level)
    const elseGraph = msgField(6, [
      msgField(1, [strField(1, input), strField(2, `else_out${i}`), strField(4, 'Identity')]),
      strField(2, `else${i}`),
      msgField(12, [strField(1, `else_out${i}`)]),
    ]);
    const attrElse = msgField(5, [strField(1, 'else_branch'), elseGraph, intField(20, 5)]);
    inner = msgField(1, [strField(1, 'cond'), strField(2, `if_out${i}`), strField(3, `if${i}`), strField(4, 'If'), attr, attrElse]);
  }
  return inner;
}

function treeLevel(bytes, op, donors) {
  const { a, b, c } = op;
  const tree = parseFields(bytes, 0, bytes.length);
  if (!tree || tree.length === 0) return byteLevel(bytes, { ...op, op: 'flip' }, donors);
  const flat = flatten(tree);
  switch (op.op) {
    case 'tree.varint':
    case 'tree.dtype': {
      const ints = flat.filter((e) => e.f.wt === 0);
      if (ints.length === 0) return bytes;
      const e = pick(ints, a);
      if (op.op === 'tree.dtype') e.f.value = BigInt(pick([0, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 13, 16, 17, 21, 99], b));
      else e.f.value = c % 3 === 0 ? e.f.value + BigInt((b % 7) - 3) : pick(INTERESTING_INTS, b);
      if (e.f.value < 0n) e.f.value = BigInt.asUintN(64, e.f.value);
      markDirty(e, flat);
      break;
    }
    case 'tree.delete': {
      const e = pick(flat, a);
      e.list.splice(e.index, 1);
      markListDirty(e.parent, flat);
      break;
    }
    case 'tree.dup': {
      const e = pick(flat, a);
      const copies = 1 + (b % 3);
      for (let k = 0; k < copies; k++) e.list.splice(e.index + 1, 0, e.f);
      markListDirty(e.parent, flat);
      break;
    }
    case 'tree.graft': {
      const donor = donors.length > 0 ? pick(donors, b) : bytes;
      const dtree = parseFields(donor, 0, donor.length);
      if (!dtree) return bytes;
      const dflat = flatten(dtree).filter((e) => e.f.end - e.f.start < 4096);
      if (dflat.length === 0) return bytes;
      const g = pick(dflat, c);
      const msgs = flat.filter((e) => e.f.children);
      const target = msgs.length > 0 ? pick(msgs, a) : null;
      const list = target ? target.f.children : tree;
      // the grafted field keeps its own encoding (tag included): emit it raw
      list.splice(a % (list.length + 1), 0, { no: 0, wt: -1, rawBytes: donor.slice(g.f.start, g.f.end), dirty: true });
      if (target) markDirty(target, flat);
      break;
    }
    case 'tree.string': {
      const strs = flat.filter((e) => e.f.wt === 2 && !e.f.children && e.f.payload[1] - e.f.payload[0] <= 256);
      if (strs.length === 0) return bytes;
      const e = pick(strs, a);
      e.f.bytes = new TextEncoder().encode(pick(INTERESTING_STRINGS, b));
      e.f.children = undefined;
      markDirty(e, flat);
      break;
    }
    case 'tree.cutbytes': {
      const blobs = flat.filter((e) => e.f.wt === 2 && !e.f.children && e.f.payload[1] > e.f.payload[0]);
      if (blobs.length === 0) return bytes;
      const e = pick(blobs, a);
      const body = bytes.subarray(e.f.payload[0], e.f.payload[1]);
      const mode = b % 3;
      e.f.bytes =
        mode === 0
          ? body.slice(0, c % body.length)
          : mode === 1
            ? body.slice(0, Math.max(0, body.length - 1 - (c % 8)))
            : concat([body, body.subarray(0, 1 + (c % 64))]);
      markDirty(e, flat);
      break;
    }
    case 'tree.float': {
      // weights (float32 raw_data) set to special values: NaN, Inf, 3.4e38, denormals ...
      const blobs = flat.filter((e) => e.f.wt === 2 && !e.f.children && (e.f.payload[1] - e.f.payload[0]) % 4 === 0 && e.f.payload[1] - e.f.payload[0] >= 8);
      if (blobs.length === 0) return bytes;
      const e = pick(blobs, a);
      const body = bytes.slice(e.f.payload[0], e.f.payload[1]);
      const v = new DataView(body.buffer);
      const words = body.length / 4;
      const val = pick(SPECIAL_F32, b);
      const rnd = prng(c);
      const k = c % 3 === 0 ? words : 1 + (c % 4);
      for (let i = 0; i < k; i++) v.setFloat32(4 * (k === words ? i : rnd() % words), val, true);
      e.f.bytes = body;
      markDirty(e, flat);
      break;
    }
    case 'tree.wiretype': {
      const e = pick(flat, a);
      const wt = pick([0, 1, 2, 5], b);
      if (wt === e.f.wt) return bytes;
      if (wt === 0) e.f.value = BigInt(e.f.payload ? e.f.payload[1] - e.f.payload[0] : 0);
      else if (e.f.wt === 0) e.f.bytes = encodeVarint(e.f.value);
      else if (e.f.payload) e.f.bytes = bytes.slice(e.f.payload[0], e.f.payload[1]);
      e.f.children = undefined;
      e.f.wt = wt;
      markDirty(e, flat);
      break;
    }
    case 'tree.nest': {
      // an If chain 1..40 deep with a Relu at the bottom, added to the main graph
      const graph = tree.find((f) => f.no === 7 && f.children);
      if (!graph) return bytes;
      const depth = 1 + (b % 40);
      const inputName = firstInputName(bytes, graph) ?? 'x';
      graph.children.splice(a % (graph.children.length + 1), 0, nestedIf(depth, inputName));
      graph.dirty = true;
      break;
    }
  }
  return encodeFields(tree, bytes);
}

function firstInputName(bytes, graph) {
  const inp = graph.children.find((f) => f.no === 11 && f.children);
  const name = inp?.children.find((f) => f.no === 1 && f.payload);
  return name ? new TextDecoder().decode(bytes.subarray(name.payload[0], name.payload[1])) : undefined;
}

/** Apply ONNX operations to `bytes`; donors are other fixtures' bytes for splices and grafts. */
export function mutateOnnx(bytes, ops, donors = []) {
  let out = bytes;
  for (const op of ops) {
    out = op.op.startsWith('tree.') ? treeLevel(out, op, donors) : byteLevel(out, op, donors);
    if (out.length > 8 * 1024 * 1024) out = out.subarray(0, 8 * 1024 * 1024);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// .npy

export const NPY_OPS = [
  'flip',
  'flip',
  'byte',
  'truncate',
  'extend',
  'splice',
  'header.shape',
  'header.shape',
  'header.descr',
  'header.fortran',
  'header.len',
  'header.version',
  'header.text',
  'data.value',
  'data.value',
  'data.fill',
];

const SHAPES = [
  '()',
  '(0,)',
  '(1,)',
  '(784,)',
  '(28, 28)',
  '(1, 28, 28)',
  '(1, 1, 28, 28)',
  '(2, 784)',
  '(4, 1, 28, 28)',
  '(100, 784)',
  '(12,)',
  '(12, 12)',
  '(144,)',
  '(3, 4)',
  '(-1,)',
  '(2**31,)',
  '(4294967296,)',
  '(9223372036854775807,)',
  '(99999999999999999999,)',
  '(784, 0)',
  '(1.5,)',
  "('a',)",
  '(0, 0)',
  '(1, 1, 1, 1, 1, 1, 1, 1, 1, 784)',
  '(196, 4)',
  '[784]',
  '784',
  '(28, 28,, )',
  '(',
];
const DESCRS = [
  "'<f4'",
  "'<f8'",
  "'>f4'",
  "'|u1'",
  "'<i8'",
  "'|b1'",
  "'<f2'",
  "'<c8'",
  "'|O'",
  "'<U4'",
  "'|i1'",
  "'<i4'",
  "'f4'",
  "''",
  "[('a', '<f4')]",
  "'<f16'",
  '1',
];
const HEADER_TEXTS = [
  "{'descr': '<f4', 'fortran_order': False, 'shape': (784,), }",
  "{'descr': '<f4', 'fortran_order': False, 'shape': (784,), 'descr': '<f8', }",
  "{'descr': '<f4', 'fortran_order': False}",
  "{'descr': '<f4', 'fortran_order': False, 'shape': (784,), 'extra': {'a': [1, (2, 3)]}, }",
  "{'descr': '<f4', 'fortran_order': False, 'shape': " + '('.repeat(2000) + ')'.repeat(2000) + ', }',
  '{\'descr\': "<f4", "fortran_order": False, \'shape\': (784,)}',
  '',
  '{}',
  "{'descr': '<f4' 'fortran_order': False, 'shape': (784,), }",
  '[1, 2, 3]',
];

function npyHeader(bytes) {
  if (bytes.length < 10) return null;
  const major = bytes[6];
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (major === 1) return { major, lenPos: 8, lenBytes: 2, start: 10, len: v.getUint16(8, true) };
  if ((major === 2 || major === 3) && bytes.length >= 12) return { major, lenPos: 8, lenBytes: 4, start: 12, len: v.getUint32(8, true) };
  return null;
}

function latin1(b) {
  let s = '';
  for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]);
  return s;
}

function fromLatin1(s) {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
}

/** Replace the header text; `fix` keeps the header length field consistent. */
function withHeader(bytes, h, text, fix) {
  const body = bytes.subarray(Math.min(bytes.length, h.start + h.len));
  const head = fromLatin1(text);
  const out = concat([bytes.subarray(0, h.start), head, body]);
  if (fix) {
    const v = new DataView(out.buffer);
    if (h.lenBytes === 2) v.setUint16(h.lenPos, Math.min(0xffff, head.length), true);
    else v.setUint32(h.lenPos, head.length, true);
  }
  return out;
}

function npyData(bytes) {
  const h = npyHeader(bytes);
  if (!h) return null;
  const text = latin1(bytes.subarray(h.start, Math.min(bytes.length, h.start + h.len)));
  const m = /'descr':\s*'([<>|=]?)([a-z])(\d+)'/.exec(text);
  if (!m) return null;
  return { start: h.start + h.len, kind: m[2], size: Number(m[3]) };
}

/** Apply .npy operations to `bytes`. */
export function mutateNpy(bytes, ops, donors = []) {
  let out = bytes;
  for (const op of ops) {
    const { a, b, c } = op;
    const len = out.length;
    const h = npyHeader(out);
    const headerEnd = h ? Math.min(len, h.start + h.len) : Math.min(len, 128);
    switch (op.op) {
      case 'flip': {
        if (len === 0) break;
        const pos = c % 10 < 7 ? a % Math.max(1, headerEnd) : a % len;
        out = Uint8Array.from(out);
        out[pos] ^= 1 << (b % 8);
        break;
      }
      case 'byte': {
        if (len === 0) break;
        const pos = c % 10 < 7 ? a % Math.max(1, headerEnd) : a % len;
        out = Uint8Array.from(out);
        out[pos] = pick([0x00, 0x20, 0x0a, 0x27, 0x28, 0x29, 0x2c, 0x3a, 0x7b, 0x7d, 0x80, 0xff, 0x31, 0x39], b);
        break;
      }
      case 'truncate':
        out = out.slice(0, len === 0 ? 0 : a % len);
        break;
      case 'extend':
        out = concat([out, new Uint8Array(1 + (a % 64)).fill(b & 0xff)]);
        break;
      case 'splice': {
        const donor = donors.length > 0 ? pick(donors, b) : out;
        const from = c % Math.max(1, donor.length);
        const chunk = donor.subarray(from, Math.min(donor.length, from + 1 + ((c >>> 16) % 128)));
        const at = a % (len + 1);
        out = concat([out.subarray(0, at), chunk, out.subarray(at)]);
        break;
      }
      case 'header.shape':
      case 'header.descr':
      case 'header.fortran': {
        if (!h) break;
        const text = latin1(out.subarray(h.start, headerEnd));
        let t = text;
        if (op.op === 'header.shape') t = text.replace(/'shape':\s*(\([^)]*\)|\[[^\]]*\])/, `'shape': ${pick(SHAPES, a)}`);
        if (op.op === 'header.descr') t = text.replace(/'descr':\s*'[^']*'/, `'descr': ${pick(DESCRS, a)}`);
        if (op.op === 'header.fortran') t = text.replace(/'fortran_order':\s*\w+/, `'fortran_order': ${pick(['True', 'False', '0', 'None', "'no'", ''], a)}`);
        out = withHeader(out, h, t, b % 4 !== 0);
        break;
      }
      case 'header.text': {
        if (!h) break;
        out = withHeader(out, h, pick(HEADER_TEXTS, a) + (b % 2 ? '\n' : ' '.repeat(b % 16) + '\n'), c % 4 !== 0);
        break;
      }
      case 'header.len': {
        if (!h) break;
        out = Uint8Array.from(out);
        const v = new DataView(out.buffer);
        const choices = [0, h.len - 1, h.len + 1, h.len + 16, 0xffff, 0x7fffffff, 0xffffffff, len, 1];
        const nv = pick(choices, a);
        if (h.lenBytes === 2) v.setUint16(h.lenPos, nv & 0xffff, true);
        else v.setUint32(h.lenPos, nv >>> 0, true);
        break;
      }
      case 'header.version': {
        if (len < 8) break;
        out = Uint8Array.from(out);
        out[6] = pick([0, 1, 2, 3, 4, 255], a);
        out[7] = b % 3;
        break;
      }
      case 'data.value':
      case 'data.fill': {
        const d = npyData(out);
        if (!d || d.kind !== 'f' || (d.size !== 4 && d.size !== 8)) break;
        const count = Math.floor((len - d.start) / d.size);
        if (count <= 0) break;
        out = Uint8Array.from(out);
        const v = new DataView(out.buffer);
        const special = d.size === 4 ? SPECIAL_F32 : SPECIAL_F64;
        const val = pick(special, b);
        const write = (i) => (d.size === 4 ? v.setFloat32(d.start + i * 4, val, true) : v.setFloat64(d.start + i * 8, val, true));
        if (op.op === 'data.value') write(a % count);
        else {
          const rnd = prng(c);
          const every = 1 + (a % 4);
          for (let i = 0; i < count; i++) if (every === 1 || rnd() % every === 0) write(i);
        }
        break;
      }
    }
    if (out.length > 8 * 1024 * 1024) out = out.subarray(0, 8 * 1024 * 1024);
  }
  return out;
}
