#!/usr/bin/env -S GLIBC_TUNABLES=glibc.malloc.hugetlb=1 node
// The CLI entry point runs the compiled code (npm run build writes dist/).
//
// The line above starts node with glibc's tunable glibc.malloc.hugetlb=1 (glibc 2.35 and later;
// ignored elsewhere): malloc then asks for transparent huge pages (madvise) for its large blocks,
// which is where V8's typed arrays and onnxruntime's tensors live. A propagation or a Monte Carlo
// allocates gigabytes of fresh pages, one page fault per 4 KiB without it, per 2 MiB with it:
// measured on a 2-core VM, 4 GiB of fresh pages 11.1 s without and 1.3 s with, and ResNet-18's
// `analyze` 112 s without and 48 s with (docs/BENCHMARKS.md, "Page faults"). Tunables are read
// when a process starts, so `node bin/netmoments.js` (no shebang) runs without it unless
// GLIBC_TUNABLES is set in the environment.
import { main } from '../dist/cli.js';

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
