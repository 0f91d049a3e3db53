/**
 * Loading an ONNX file into the Graph model. Every way a file can be wrong ends in a one-line
 * NetmomentsError that names the file: not protobuf, truncated, no graph, absurd dims, tensors
 * whose data is shorter than their dims say, external data outside the model's folder, non-finite
 * weights, a graph that is not a DAG. See docs/ONNX.md.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync, realpathSync, statSync } from 'node:fs';
import { dirname, isAbsolute, relative, resolve, sep } from 'node:path';
import { NetmomentsError, oneLine } from '../errors.js';
import { normalizeBatchAxis } from './batchAxis.js';
import { fixInputs, type InputChoice } from './feeds.js';
import { graphFromModelProto, type Graph } from './graph.js';
import { onnx, toNumber, type ModelProto, type SparseTensorProto, type TensorProto } from './proto.js';
import { bytesPerElement, decodeTensor, elementCount, type TensorData, type TensorValue } from './tensor.js';
import { checkFinite, checkTensorDims, validateModelProto } from './validate.js';
import { readFileOrFail } from '../util/files.js';

export interface LoadedModel {
  /** The path as the user gave it (used in messages). */
  file: string;
  graph: Graph;
  /** sha256 of the model file's bytes (external data not included), hex. */
  sha256: string;
  /** The file's bytes as read. */
  bytes: Uint8Array;
  /** True when some initializer came from an external-data file. */
  externalData: boolean;
  /** Things worth telling the user that did not stop loading (e.g. nodes re-sorted, and every entry of `rewrites`). */
  warnings: string[];
  /**
   * How `graph` differs from the file, one line each: initializers that IR 3 lists as inputs read
   * as constants; a fixed batch B > 1 made 1, or a batch axis added to an input without one
   * (batchAxis.ts). Empty for most models.
   */
  rewrites: string[];
}

export interface LoadOptions {
  /** Folder external data is resolved in (default: the model file's folder). */
  baseDir?: string;
  /** Fixed values for some data inputs and the input the noise goes on (models with several data inputs; feeds.ts). */
  inputs?: InputChoice;
}

/** Protobuf refuses messages over 2 GiB; so do we, before reading. */
const MAX_MODEL_BYTES = 2 ** 31 - 1;

function err(message: string, file: string, code: 'BAD_INPUT' | 'UNSUPPORTED' = 'BAD_INPUT'): NetmomentsError {
  return new NetmomentsError(message, { file, code });
}

/** Read and check an ONNX file. */
export function loadModel(file: string, options: LoadOptions = {}): LoadedModel {
  let size: number;
  try {
    const st = statSync(file);
    if (st.isDirectory()) throw err('is a directory, not an ONNX model file', file);
    size = st.size;
  } catch (e) {
    if (e instanceof NetmomentsError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    throw err(code === 'ENOENT' ? 'no such file' : `cannot read the file (${code ?? oneLine(String(e))})`, file);
  }
  if (size > MAX_MODEL_BYTES) {
    throw err(`the file is ${size} bytes, more than a protobuf message can hold (2 GiB); use external data`, file, 'UNSUPPORTED');
  }
  const bytes = readFileOrFail(file);
  return loadModelBytes(bytes, file, { ...options, baseDir: options.baseDir ?? dirname(resolve(file)) });
}

/**
 * Decode and check model bytes. `file` names the model in messages; external data is resolved in
 * options.baseDir (default: the folder of `file`).
 */
export function loadModelBytes(bytes: Uint8Array, file: string, options: LoadOptions = {}): LoadedModel {
  if (bytes.length === 0) throw err('not an ONNX model: the file is empty', file);
  let model: ModelProto;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (e) {
    throw err(`not an ONNX model or truncated: ${protobufMessage(e)}`, file);
  }
  const baseDir = options.baseDir ?? dirname(resolve(file));
  let externalData = false;
  const warnings: string[] = [];
  const rewrites: string[] = [];
  let graph: Graph;
  try {
    validateModelProto(model, file);
    const external = (t: TensorProto): Uint8Array => {
      externalData = true;
      return readExternalData(t, baseDir, file);
    };
    graph = graphFromModelProto(model, { file, external });
    for (const s of model.graph?.sparseInitializer ?? []) {
      const dense = densifySparse(s, file);
      graph.initializers.set(dense.name, dense);
    }
    if (graph.dataInputs.length === 0) throw err('the model has no data input (every graph input is an initializer)', file);
    if (initializersAsConstants(graph)) rewrites.push('initializers listed as graph inputs (IR 3) are read as constants');
    const fed = options.inputs ? fixInputs(graph, options.inputs, file) : undefined;
    if (fed) rewrites.push(fed);
    const batchNote = normalizeBatchAxis(graph);
    if (batchNote) rewrites.push(batchNote);
    if (graph.outputs.length === 0) throw err('the model has no outputs', file);
    const order = graph.nodes.map((n) => n.name);
    graph.sortTopologically(file);
    if (graph.nodes.some((n, i) => n.name !== order[i])) {
      warnings.push('the nodes were not in topological order (ONNX requires it); they were sorted, keeping the file order where valid');
    }
    checkFinite(graph, file);
  } catch (e) {
    if (e instanceof NetmomentsError) {
      if (e.file) throw e;
      throw new NetmomentsError(e.message, { file, code: e.code, cause: e });
    }
    if (e instanceof RangeError) throw err(`not an ONNX model or truncated: ${protobufMessage(e)}`, file);
    // A decoded message with fields of the wrong shape: say so instead of crashing.
    throw err(`malformed ONNX model: ${oneLine(e instanceof Error ? e.message : String(e))}`, file);
  }
  return {
    file,
    graph,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    bytes,
    externalData,
    warnings: [...warnings, ...rewrites],
    rewrites,
  };
}

/**
 * Initializers that are also listed as graph inputs (every initializer in IR 3, and in later exports
 * made with keep_initializers_as_inputs) become plain constants: they leave the input list and IR 3
 * is raised to 4, the first IR in which an initializer need not be an input. Otherwise a rewrite
 * that drops an initializer nothing reads any more (the batch rewrite replaces Reshape shapes)
 * could leave its input behind as a data input that onnxruntime then asks a feed for (Graph.prune
 * drops such inputs itself). netmoments never fed them: they were never data inputs.
 */
function initializersAsConstants(graph: Graph): boolean {
  if (!graph.inputs.some((i) => graph.initializers.has(i.name))) return false;
  graph.inputs = graph.inputs.filter((i) => !graph.initializers.has(i.name));
  if (graph.irVersion < 4) graph.irVersion = 4;
  return true;
}

/** Bytes a session can load: the file itself, or the re-encoded graph when data was external or loading rewrote the graph. */
export function sessionBytes(model: LoadedModel): Uint8Array {
  return model.externalData || model.rewrites.length > 0 ? model.graph.toBytes() : model.bytes;
}

function protobufMessage(e: unknown): string {
  const msg = oneLine(e instanceof Error ? e.message : String(e));
  if (/call stack/i.test(msg)) return 'messages nest too deeply';
  return msg;
}

/**
 * Resolve one external-data initializer. Only files inside `baseDir` are read: no absolute paths,
 * no '..', no symlink that leaves the folder; offset and length must lie inside the file.
 */
export function readExternalData(t: TensorProto, baseDir: string, file: string): Uint8Array {
  const name = t.name ?? '';
  const entries = new Map<string, string>();
  for (const e of t.externalData ?? []) if (e.key) entries.set(e.key, e.value ?? '');
  const location = entries.get('location');
  const what = `initializer '${name}'`;
  if (!location) throw err(`${what} uses external data but names no location`, file);
  if (location.includes('\0')) throw err(`${what}: external data location contains a NUL byte`, file);
  if (isAbsolute(location) || /^[a-zA-Z]:/.test(location) || location.startsWith('\\')) {
    throw err(`${what}: external data location '${location}' is an absolute path; only files beside the model are read`, file);
  }
  if (location.split(/[\\/]+/).includes('..')) {
    throw err(`${what}: external data location '${location}' leaves the model's folder ('..')`, file);
  }
  let realBase: string;
  let realTarget: string;
  try {
    realBase = realpathSync(baseDir);
  } catch {
    throw err(`${what}: the model's folder cannot be resolved for external data`, file);
  }
  try {
    realTarget = realpathSync(resolve(baseDir, location));
  } catch {
    throw err(`${what}: external data file '${location}' does not exist beside the model`, file);
  }
  const rel = relative(realBase, realTarget);
  if (rel === '' || rel.startsWith(`..${sep}`) || rel === '..' || isAbsolute(rel)) {
    throw err(`${what}: external data file '${location}' resolves outside the model's folder (a symlink?)`, file);
  }
  const st = statSync(realTarget);
  if (!st.isFile()) throw err(`${what}: external data '${location}' is not a regular file`, file);
  const parseInt64 = (key: string): number | undefined => {
    const v = entries.get(key);
    if (v === undefined || v === '') return undefined;
    if (!/^\d+$/.test(v.trim())) throw err(`${what}: external data ${key} '${v}' is not a non-negative integer`, file);
    const n = Number(v.trim());
    if (!Number.isSafeInteger(n)) throw err(`${what}: external data ${key} ${v} is absurd`, file);
    return n;
  };
  const offset = parseInt64('offset') ?? 0;
  const length = parseInt64('length') ?? st.size - offset;
  if (offset > st.size || length < 0 || offset + length > st.size) {
    throw err(`${what}: external data range [${offset}, ${offset + length}) lies past the end of '${location}' (${st.size} bytes)`, file);
  }
  checkTensorDims(t, 'initializer', file);
  const width = bytesPerElement(t.dataType ?? 0);
  const expected = width === undefined ? undefined : elementCount((t.dims ?? []).map(toNumber)) * width;
  if (expected !== undefined && expected !== length) {
    throw err(`${what} declares ${expected} bytes but its external data range holds ${length}`, file);
  }
  const fd = openSync(realTarget, 'r');
  try {
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const n = readSync(fd, out, done, length - done, offset + done);
      if (n <= 0) throw err(`${what}: external data file '${location}' ended early`, file);
      done += n;
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

/** A SparseTensorProto initializer as a dense TensorValue. */
function densifySparse(s: SparseTensorProto, file: string): TensorValue {
  const valuesProto = s.values;
  const name = valuesProto?.name ?? '';
  if (!valuesProto || !s.indices) throw err(`sparse initializer '${name}' lacks values or indices`, file);
  const dims = (s.dims ?? []).map(toNumber);
  checkTensorDims({ name, dims }, 'sparse initializer', file);
  const values = decodeTensor(valuesProto);
  const indices = decodeTensor(s.indices);
  const count = elementCount(dims);
  const nnz = values.data.length;
  const idx = Array.from(indices.data as ArrayLike<number | bigint>, (v) => Number(v));
  const linear: number[] = [];
  if (idx.length === nnz) linear.push(...idx);
  else if (idx.length === nnz * dims.length) {
    for (let k = 0; k < nnz; k++) {
      let off = 0;
      for (let a = 0; a < dims.length; a++) {
        const i = idx[k * dims.length + a];
        if (i < 0 || i >= dims[a]) throw err(`sparse initializer '${name}' has an index out of range`, file);
        off = off * dims[a] + i;
      }
      linear.push(off);
    }
  } else throw err(`sparse initializer '${name}' has ${idx.length} indices for ${nnz} values`, file);
  const Ctor = values.data.constructor as new (n: number) => TensorData;
  const dense = new Ctor(count);
  for (let k = 0; k < nnz; k++) {
    const off = linear[k];
    if (!Number.isInteger(off) || off < 0 || off >= count) throw err(`sparse initializer '${name}' has an index out of range`, file);
    (dense as unknown as ArrayLike<unknown> & Record<number, unknown>)[off] = (values.data as unknown as ArrayLike<unknown>)[k];
  }
  return { name, dataType: values.dataType, dims, data: dense };
}
