/**
 * Elementwise Max and Min with a noisy operand, rewritten into ops that have moment rules:
 *   max(a, b) = a + relu(b - a),   min(a, b) = a - relu(a - b)
 * (exact identities; more than two operands fold left: max(a, b, c) = max(max(a, b), c)). With a
 * and b jointly Gaussian, b - a is Gaussian, the Relu's moments are exact, and its covariance with
 * a is exact in the statistical linearization (Stein's lemma: cov(a, relu(d)) = Phi(m_d / s_d)
 * cov(a, d)), so the mean and variance of the max of two Gaussians are Clark's (1961), exact. This
 * covers maxout units (the max of two Gemms), torch.max / torch.min of two tensors, and Max or
 * Min with a constant (a threshold: relu of the difference, per unit when the constant is).
 */
import type { Graph, GraphNode } from '../../onnx/graph.js';
import { isDefault } from './factor.js';

/**
 * Rewrite every Max and Min of `graph` that reads a noisy tensor (changed in place); the tensors it
 * adds get the output's shape in `shapes` when given. Returns how many.
 */
export function rewriteMaxMin(graph: Graph, isVariable: (t: string) => boolean, shapes?: Map<string, number[]>): number {
  let rewritten = 0;
  graph.nodes = graph.nodes.flatMap((n) => {
    if (!isDefault(n) || (n.opType !== 'Max' && n.opType !== 'Min') || !n.inputs.some((x) => x && isVariable(x))) return [n];
    const ins = n.inputs.filter((x) => x);
    if (ins.length === 1) return [{ ...n, opType: 'Identity', inputs: ins, attributes: [] }];
    rewritten++;
    const nodes: GraphNode[] = [];
    const shape = shapes?.get(n.outputs[0]);
    const make = (opType: string, inputs: string[], output: string): string => {
      nodes.push({ name: output, opType, domain: '', inputs, outputs: [output], attributes: [] });
      if (shape && output !== n.outputs[0]) shapes!.set(output, [...shape]);
      return output;
    };
    let acc = ins[0];
    for (let i = 1; i < ins.length; i++) {
      const tag = `${n.name}/netmoments_${n.opType.toLowerCase()}${i}`;
      const last = i === ins.length - 1;
      const out = last ? n.outputs[0] : `${tag}_out`;
      if (n.opType === 'Max') {
        // acc + relu(b - acc)
        const d = make('Sub', [ins[i], acc], `${tag}_diff`);
        const r = make('Relu', [d], `${tag}_relu`);
        acc = make('Add', [acc, r], out);
      } else {
        // acc - relu(acc - b)
        const d = make('Sub', [acc, ins[i]], `${tag}_diff`);
        const r = make('Relu', [d], `${tag}_relu`);
        acc = make('Sub', [acc, r], out);
      }
    }
    return nodes;
  });
  return rewritten;
}
