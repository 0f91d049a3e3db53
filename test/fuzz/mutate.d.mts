/** Types of test/fuzz/mutate.mjs (plain JavaScript so that the fuzz workers run it without a TypeScript loader). */
export interface Op {
  op: string;
  a: number;
  b: number;
  c: number;
}
export const ONNX_OPS: string[];
export const NPY_OPS: string[];
export function mutateOnnx(bytes: Uint8Array, ops: Op[], donors?: Uint8Array[]): Uint8Array;
export function mutateNpy(bytes: Uint8Array, ops: Op[], donors?: Uint8Array[]): Uint8Array;
export function encodeVarint(v: number | bigint): Uint8Array;
export function concat(parts: Uint8Array[]): Uint8Array;
