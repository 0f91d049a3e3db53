/**
 * The indexed Graph IR: lookups (producer, consumers, node by name, position), the data-flow walk
 * checked against a brute-force fixed-point closure on random DAGs, between(), topological order,
 * and the lookups following edits of the node list.
 */
import { describe, expect, it } from 'vitest';
import { Graph, type GraphNode } from '../../src/onnx/graph.js';
import { NetmomentsError } from '../../src/errors.js';
import { buildGraph, floatInit, makeNode, rng } from '../tangent/helpers.js';

function node(name: string, opType: string, inputs: string[], outputs: string[], domain = ''): GraphNode {
  return { name, opType, domain, inputs, outputs, attributes: [] };
}

/** A random DAG in topological order: node i reads 1-3 of the inputs and earlier outputs ('' now and then). */
function randomDag(seed: number, count: number): Graph {
  const r = rng(seed);
  const g = new Graph();
  g.inputs = [
    { name: 'x', elemType: 1, shape: [1, 4] },
    { name: 'z', elemType: 1, shape: [1, 4] },
  ];
  const tensors = ['x', 'z'];
  for (let i = 0; i < count; i++) {
    const k = 1 + Math.floor(r.uniform() * 3);
    const inputs = Array.from({ length: k }, () => (r.uniform() < 0.1 ? '' : tensors[Math.floor(r.uniform() * tensors.length)]));
    const outputs = r.uniform() < 0.3 ? [`t${i}a`, `t${i}b`] : [`t${i}`];
    g.nodes.push(node(`n${i}`, 'Add', inputs, outputs));
    tensors.push(...outputs);
  }
  g.outputs = [{ name: tensors[tensors.length - 1], elemType: 1 }];
  return g;
}

/** The closure by repeated sweeps until nothing changes (order-independent). */
function closure(g: Graph, from: string[], direction: 'up' | 'down', stop: (n: GraphNode) => boolean = () => false): Set<GraphNode> {
  const tensors = new Set(from);
  const nodes = new Set<GraphNode>();
  for (let changed = true; changed;) {
    changed = false;
    for (const n of g.nodes) {
      if (nodes.has(n) || stop(n)) continue;
      const hit = direction === 'down' ? n.inputs.some((x) => x && tensors.has(x)) : n.outputs.some((o) => o && tensors.has(o));
      if (!hit) continue;
      nodes.add(n);
      for (const t of direction === 'down' ? n.outputs : n.inputs) if (t) tensors.add(t);
      changed = true;
    }
  }
  return nodes;
}

describe('Graph lookups', () => {
  const g = new Graph();
  g.nodes = [
    node('a', 'Relu', ['x'], ['ya']),
    node('b', 'Add', ['ya', 'ya'], ['yb']),
    node('c', 'Mul', ['x', 'yb'], ['yc', '']),
    node('c', 'Neg', ['yc'], ['yd']),
  ];

  it('producer, consumers (graph order, once each), node by name (the first), position', () => {
    expect(g.producerOf('yb')?.name).toBe('b');
    expect(g.producerOf('x')).toBeUndefined();
    expect(g.producerOf('')).toBeUndefined();
    expect(g.consumersOf('x').map((n) => n.opType)).toEqual(['Relu', 'Mul']);
    expect(g.consumersOf('ya').map((n) => n.name)).toEqual(['b']);
    expect(g.consumersOf('nothing')).toEqual([]);
    expect(g.node('c')?.opType).toBe('Mul');
    expect(g.node('zz')).toBeUndefined();
    expect(g.nodes.map((n) => g.positionOf(n))).toEqual([0, 1, 2, 3]);
    expect(g.positionOf(node('a', 'Relu', ['x'], ['ya']))).toBe(-1);
    expect(g.producedTensors()).toEqual(['ya', 'yb', 'yc', 'yd']);
  });

  it('follow edits of the node list: a replaced array, a push, a removal', () => {
    const h = new Graph();
    h.nodes = [node('a', 'Relu', ['x'], ['ya'])];
    expect(h.consumersOf('ya')).toEqual([]);
    h.nodes.push(node('b', 'Neg', ['ya'], ['yb']));
    expect(h.consumersOf('ya').map((n) => n.name)).toEqual(['b']);
    expect(h.producerOf('yb')?.name).toBe('b');
    h.nodes = h.nodes.filter((n) => n.name !== 'b');
    expect(h.producerOf('yb')).toBeUndefined();
    expect(h.consumersOf('ya')).toEqual([]);
  });

  it('relus() lists the split points: Relu, LeakyRelu, PRelu and Clip of the default domain only, in graph order', () => {
    const h = new Graph();
    h.nodes = [
      node('r0', 'Relu', ['x'], ['a']),
      node('custom', 'Relu', ['a'], ['b'], 'com.example'),
      node('leaky', 'LeakyRelu', ['b'], ['c']),
      node('r1', 'Relu', ['c'], ['d'], 'ai.onnx'),
    ];
    expect(h.relus().map((n) => n.name)).toEqual(['r0', 'leaky', 'r1']);
  });
});

describe('Graph.walk', () => {
  it('equals the fixed-point closure on random DAGs, both directions, with and without stop nodes', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const g = randomDag(seed, 40);
      const stop = (n: GraphNode) => Number(n.name.slice(1)) % 7 === 3;
      for (const [from, direction] of [
        [['x'], 'down'],
        [['z', 't5'], 'down'],
        [[g.outputs[0].name], 'up'],
        [['t20', 't30a', 't30'], 'up'],
      ] as const) {
        for (const s of [undefined, stop]) {
          const w = g.walk(from, direction, { stop: s });
          const expected = closure(g, [...from], direction, s);
          expect(new Set(w.nodes)).toEqual(expected);
          // in graph order
          expect(w.nodes.map((n) => g.positionOf(n))).toEqual(w.nodes.map((n) => g.positionOf(n)).sort((a, b) => a - b));
          const tensors = new Set<string>(from);
          for (const n of expected) for (const t of direction === 'down' ? n.outputs : n.inputs) if (t) tensors.add(t);
          expect(w.tensors).toEqual(tensors);
        }
      }
    }
  });

  it('reads: extra tensors a node reads (what subgraph bodies read from outside) carry the walk', () => {
    const g = new Graph();
    g.nodes = [node('a', 'Neg', ['x'], ['ya']), node('loop', 'Loop', ['n'], ['yl']), node('b', 'Neg', ['yl'], ['yb'])];
    expect(g.walk(['ya'], 'down').nodes).toEqual([]);
    const reads = (n: GraphNode) => (n.name === 'loop' ? [...n.inputs, 'ya'] : n.inputs);
    expect(g.walk(['ya'], 'down', { reads }).nodes.map((n) => n.name)).toEqual(['loop', 'b']);
    expect(g.walk(['yb'], 'up', { reads }).nodes.map((n) => n.name)).toEqual(['a', 'loop', 'b']);
    expect([...g.walk(['yb'], 'up', { reads }).tensors].sort()).toEqual(['n', 'x', 'ya', 'yb', 'yl']);
  });

  it('between: the nodes from a cut to the outputs, initializer and constant chains included', () => {
    const g = buildGraph({
      inputs: [['x', [1, 3]]],
      outputs: ['y'],
      nodes: [
        makeNode('Neg', ['x'], ['a'], { name: 'below' }),
        makeNode('Relu', ['a'], ['r'], { name: 'relu' }),
        makeNode('Constant', [], ['c'], { name: 'const', attributes: { value_floats: [1, 2, 3] } }),
        makeNode('Mul', ['r', 'c'], ['m'], { name: 'scale' }),
        makeNode('Add', ['m', 'w'], ['y'], { name: 'bias' }),
      ],
      initializers: [floatInit('w', [3], [0.5, 0.5, 0.5])],
    });
    expect(g.between(['r'], ['y']).map((n) => n.name)).toEqual(['const', 'scale', 'bias']);
    expect(g.between(['x'], ['r']).map((n) => n.name)).toEqual(['below', 'relu']);
    expect(g.between(['a'], ['r']).map((n) => n.name)).toEqual(['relu']);
  });
});

describe('Graph.topologicalOrder', () => {
  it('is stable where the order is valid, moves what reads too early, and names a missing input', () => {
    const g = new Graph();
    g.inputs = [{ name: 'x', elemType: 1 }];
    const [a, b, c] = [node('a', 'Neg', ['x'], ['ya']), node('b', 'Neg', ['yc'], ['yb']), node('c', 'Neg', ['ya'], ['yc'])];
    g.nodes = [a, b, c];
    expect(g.topologicalOrder().map((n) => n.name)).toEqual(['a', 'c', 'b']);
    expect(g.nodes.map((n) => n.name)).toEqual(['a', 'b', 'c']); // not sorted in place
    g.sortTopologically();
    expect(g.nodes.map((n) => n.name)).toEqual(['a', 'c', 'b']);
    expect(g.walk(['x'], 'down').nodes.map((n) => n.name)).toEqual(['a', 'c', 'b']);
    g.nodes = [node('d', 'Neg', ['missing'], ['yd'])];
    expect(() => g.topologicalOrder('m.onnx')).toThrow(NetmomentsError);
    expect(() => g.topologicalOrder('m.onnx')).toThrow(/'missing'/);
  });
});

describe('Graph.prune', () => {
  it('on an IR-3-style graph (initializers listed as inputs) drops the inputs of the initializers it drops: none is left dangling', () => {
    // y1 = x W1 is kept; y2 = x + b2 is not needed once y1 is the only output
    const g = buildGraph({
      inputs: [
        ['x', [1, 2]],
        ['W1', [2, 2]],
        ['b2', [1, 2]],
      ],
      outputs: ['y1', 'y2'],
      nodes: [makeNode('MatMul', ['x', 'W1'], ['y1'], { name: 'mm' }), makeNode('Add', ['x', 'b2'], ['y2'], { name: 'add' })],
      initializers: [floatInit('W1', [2, 2], [1, 2, 3, 4]), floatInit('b2', [1, 2], [5, 6])],
    });
    expect(g.inputs.map((i) => i.name)).toEqual(['x', 'W1', 'b2']);
    g.outputs = g.outputs.filter((o) => o.name === 'y1');
    g.prune();
    expect(g.nodes.map((n) => n.name)).toEqual(['mm']);
    expect([...g.initializers.keys()]).toEqual(['W1']);
    expect(g.inputs.map((i) => i.name)).toEqual(['x', 'W1']);
    // what onnxruntime would ask a feed for: only the real data input
    expect(g.dataInputs.map((i) => i.name)).toEqual(['x']);
  });
});
