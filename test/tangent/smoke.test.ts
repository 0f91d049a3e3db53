import { describe, it } from 'vitest';
import { buildGraph, expectJvpMatchesFd, makeNode, randomInit, rng } from './helpers.js';

describe('smoke', () => {
  it('conv relu', async () => {
    const r = rng(3);
    const g = buildGraph({
      inputs: [['x', ['N', 2, 6, 6]]],
      outputs: ['y'],
      nodes: [makeNode('Conv', ['x', 'w', 'b'], ['c'], { attributes: { pads: [1, 1, 1, 1] } }), makeNode('Relu', ['c'], ['y'])],
      initializers: [randomInit(r, 'w', [3, 2, 3, 3]), randomInit(r, 'b', [3])],
    });
    await expectJvpMatchesFd(g);
  });
});
