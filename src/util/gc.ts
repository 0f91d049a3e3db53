/**
 * V8's full collection, for the few places that drop gigabytes at once and allocate again soon after
 * (the Gram form's kept rows of A before the next sessions are made): V8 collects typed arrays when
 * it decides, which can be after the next large allocation. The --expose-gc function is switched on
 * and fetched at the first call, so that importing the library changes no V8 flag; where it cannot
 * be had, nothing happens (memory is collected when V8 decides). src/propagate/propagator.ts uses it
 * for its factors (at its own threshold, COLLECT_BYTES).
 */
import v8 from 'node:v8';
import vm from 'node:vm';

let fullCollection: (() => void) | undefined;

export function collectGarbage(): void {
  if (!fullCollection) {
    fullCollection = () => {};
    try {
      v8.setFlagsFromString('--expose-gc');
      const gc = vm.runInNewContext('gc') as unknown;
      if (typeof gc === 'function') fullCollection = gc as () => void;
    } catch {
      // no gc: memory is collected when V8 decides
    }
  }
  fullCollection();
}

/**
 * Below this many bytes dropped, no collection is asked for (and no V8 flag switched on): a small
 * model's serialized copies (LeNet's: 1.7 MB) are left to V8; AlexNet's 244 MB and VGG-11's 531 MB
 * are collected.
 */
export const COLLECT_MIN_BYTES = 64 * 2 ** 20;

/** collectGarbage when `bytes` were just dropped and they are at least COLLECT_MIN_BYTES. */
export function collectGarbageAfter(bytes: number): void {
  if (bytes >= COLLECT_MIN_BYTES) collectGarbage();
}
