/**
 * Models with several data inputs (issue 14, class 4): the noise goes on one of them
 * (`--noise-input NAME`) and every other one is fixed to a value the user gives
 * (`--feed NAME=file.npy`). A fixed input becomes a constant of the graph (an initializer), so
 * every engine after loading sees a model with one data input and needs nothing else: the
 * batch rewrite, the split, the tangent graphs and the propagation treat the fed values like
 * weights. The moments are then those of x -> f(x, fed values), x the noisy input.
 *
 * A fed value whose batch axis agrees with the noisy input's (both leading dims symbolic, or equal)
 * is given for one sample and tiled along axis 0 to the noisy input's batch at run time
 * (Shape -> Gather -> Concat -> Tile, ops of every opset >= 6), so that it reaches every row of a
 * batch: the engines run the model on batches of noisy inputs (Monte Carlo, direction batches).
 */
import { NetmomentsError } from '../errors.js';
import { freshBatchName, type Dim, type Graph, type GraphNode, type ValueInfo } from './graph.js';
import { DataType, dataTypeName } from './proto.js';
import type { TensorData, TensorValue } from './tensor.js';

/** A value for one data input, as read from a file (the batch axis may be left out). */
export interface InputFeed {
  /** The model input's name. */
  name: string;
  dims: number[];
  /** Numbers of any integer or float type; converted to the input's declared type. */
  data: ArrayLike<number> | BigInt64Array;
  /** The file the value came from (for messages). */
  source: string;
}

export interface InputChoice {
  feeds?: readonly InputFeed[];
  /** The data input the noise goes on (default: the only one left after the feeds). */
  noiseInput?: string;
}

function fail(message: string, file: string): never {
  throw new NetmomentsError(message, { file, code: 'BAD_INPUT' });
}

/** The feed's dims matched against the input's declared shape; a missing leading batch axis of size 1 is added. */
function feedDims(input: ValueInfo, feed: InputFeed, file: string): number[] {
  const declared = input.shape;
  let dims = feed.dims;
  if (declared && dims.length === declared.length - 1) dims = [1, ...dims];
  if (declared) {
    const bad = dims.length !== declared.length || declared.some((d, i) => typeof d === 'number' && d > 0 && d !== dims[i] && !(i === 0 && dims[0] === 1));
    if (bad) {
      const shown = declared.map((d) => (typeof d === 'number' && d > 0 ? String(d) : typeof d === 'string' && d ? d : '?')).join(',');
      fail(`--feed ${feed.name}: ${feed.source} has shape [${feed.dims.join(',')}], the input '${feed.name}' is [${shown}]`, file);
    }
  }
  return dims;
}

/** The feed's values in the input's element type. */
function feedData(input: ValueInfo, feed: InputFeed, file: string): TensorData {
  const numbers = (): number[] => Array.from(feed.data as ArrayLike<number | bigint>, (v) => Number(v));
  switch (input.elemType) {
    case DataType.FLOAT: {
      const out = Float32Array.from(numbers());
      if (out.some((v) => !Number.isFinite(v))) fail(`--feed ${feed.name}: ${feed.source} holds a value that is not finite`, file);
      return out;
    }
    case DataType.DOUBLE:
      return Float64Array.from(numbers());
    case DataType.INT64:
      return BigInt64Array.from(feed.data as ArrayLike<number | bigint>, (v) => BigInt(Math.trunc(Number(v))));
    case DataType.INT32:
      return Int32Array.from(numbers());
    case DataType.BOOL:
    case DataType.UINT8:
      return Uint8Array.from(numbers());
    default:
      return fail(`--feed ${feed.name}: the input is ${dataTypeName(input.elemType)}, which --feed cannot give`, file);
  }
}

/**
 * Fix the fed inputs as constants and check that exactly one data input, the noisy one, is left.
 * Returns the rewrite note (one line) or undefined when nothing was asked. Throws a one-line
 * error naming the model file for unknown names, wrong shapes, and inputs left unfed.
 */
export function fixInputs(graph: Graph, choice: InputChoice, file: string): string | undefined {
  const feeds = choice.feeds ?? [];
  if (feeds.length === 0 && choice.noiseInput === undefined) return undefined;
  const names = graph.dataInputs.map((i) => i.name);
  const list = names.map((n) => `'${n}'`).join(', ');
  const seen = new Set<string>();
  const values: { input: ValueInfo; value: TensorValue }[] = [];
  for (const feed of feeds) {
    const input = graph.dataInputs.find((i) => i.name === feed.name);
    if (!input) fail(`--feed ${feed.name}: the model has no data input of that name (its inputs: ${list})`, file);
    if (seen.has(feed.name)) fail(`--feed ${feed.name} is given twice`, file);
    if (feed.name === choice.noiseInput) fail(`--feed ${feed.name}: that is the --noise-input; the noisy input takes its values from --input`, file);
    seen.add(feed.name);
    const dims = feedDims(input, feed, file);
    values.push({ input, value: { name: feed.name, dataType: input.elemType, dims, data: feedData(input, feed, file) } });
  }
  const left = names.filter((n) => !seen.has(n));
  if (choice.noiseInput !== undefined && !names.includes(choice.noiseInput)) {
    fail(`--noise-input ${choice.noiseInput}: the model has no data input of that name (its inputs: ${list})`, file);
  }
  const others = left.filter((n) => n !== choice.noiseInput);
  if (choice.noiseInput !== undefined && others.length > 0) {
    fail(`the noise goes on '${choice.noiseInput}'; give the other inputs fixed values: ${others.map((n) => `--feed ${n}=FILE.npy`).join(' ')}`, file);
  }
  if (left.length === 0) fail(`every data input is fed (${list}); leave the noisy one to --input (name it with --noise-input)`, file);
  if (left.length !== 1) {
    fail(
      `${left.length} data inputs are left unfed (${left.map((n) => `'${n}'`).join(', ')}); name the noisy one with --noise-input and --feed the others`,
      file,
    );
  }
  const noisy = graph.dataInputs.find((i) => i.name === left[0])!;
  graph.inputs = graph.inputs.filter((i) => !seen.has(i.name));
  for (const { input, value } of values) {
    if (sharesBatchAxis(input, noisy) && value.dims[0] === 1) tileToBatch(graph, value, noisy.name);
    else graph.initializers.set(value.name, value);
  }
  return `input${feeds.length === 1 ? '' : 's'} ${feeds.map((f) => `'${f.name}'`).join(', ')} fixed to ${feeds.map((f) => f.source).join(', ')} (--feed); the noise goes on '${left[0]}'`;
}

/** Whether two inputs' leading dims are both a batch: both symbolic (or unknown), or the same number. */
function sharesBatchAxis(a: ValueInfo, b: ValueInfo): boolean {
  const lead = (v: ValueInfo): Dim | undefined => v.shape?.[0];
  const symbolic = (d: Dim | undefined): boolean => !(typeof d === 'number' && d > 0);
  if (!a.shape?.length || !b.shape?.length) return false;
  return symbolic(lead(a)) && symbolic(lead(b)) ? true : lead(a) === lead(b);
}

/**
 * `value` (batch 1) as a constant, and nodes that give the tensor `value.name` that constant tiled
 * along axis 0 to the batch of `noisy`: Tile(constant, Concat(Gather(Shape(noisy), [0]), [1, ...])).
 */
function tileToBatch(graph: Graph, value: TensorValue, noisy: string): void {
  const name = value.name;
  const fresh = (suffix: string): string => freshBatchName(graph, `${name}__fed_${suffix}`);
  const constant = fresh('value');
  graph.initializers.set(constant, { ...value, name: constant });
  const index0 = fresh('index0');
  graph.initializers.set(index0, { name: index0, dataType: DataType.INT64, dims: [1], data: BigInt64Array.from([0n]) });
  const ones = fresh('ones');
  graph.initializers.set(ones, {
    name: ones,
    dataType: DataType.INT64,
    dims: [value.dims.length - 1],
    data: new BigInt64Array(value.dims.length - 1).fill(1n),
  });
  const shape = fresh('shape');
  const batch = fresh('batch');
  const repeats = fresh('repeats');
  const node = (opType: string, inputs: string[], output: string, attributes: GraphNode['attributes'] = []): GraphNode => ({
    name: `${output}_node`,
    opType,
    domain: '',
    inputs,
    outputs: [output],
    attributes,
  });
  const axis0 = [{ name: 'axis', type: 2, i: 0 }] as GraphNode['attributes'];
  const repeatsInputs = value.dims.length > 1 ? [batch, ones] : [batch];
  graph.nodes.unshift(
    node('Shape', [noisy], shape),
    node('Gather', [shape, index0], batch, axis0),
    node('Concat', repeatsInputs, repeats, axis0),
    node('Tile', [constant, repeats], name),
  );
}
