/**
 * The dataset report: closed-form moments, class and flip probabilities for every input of a
 * dataset, with a choice of linearization (`--linearize input | kmeans:K | bank:DIR`),
 * checkpoints and `--resume`, and deterministic shards.
 *
 * Work is cut into chunks of consecutive inputs (`chunk`, part of the run's fingerprint). A chunk
 * is the unit of everything: its inputs run through the model in one batch, are grouped by bank
 * centre, are checkpointed together, and a shard owns whole chunks (shard I of N: chunks
 * floor(I C / N) .. floor((I + 1) C / N) - 1 of C). So a chunk is computed the same way in an
 * unsharded, a sharded and a resumed run, and the outputs are built from the records in index
 * order by src/report/summary.ts: resumed == uninterrupted and merged == unsharded, byte for byte.
 *
 * Checkpoints (with an out dir, src/dataset/checkpoint.ts): OUT/.netmoments-checkpoint/state.json
 * (the fingerprint of every option that changes a number) and one chunk-NNNNNN.ndjson per finished
 * chunk. The outputs are written only at the end (staged, then renamed: samples.csv, summary.md,
 * [records.ndjson], summary.json last; summary.json holds the sha256 of samples.csv), and the
 * checkpoint is removed after that. A run killed at any point therefore leaves the previous
 * complete outputs, or a checkpoint that `--resume` continues.
 *
 * Moments per input (docs/ARCHITECTURE.md, sections 3 and 4; src/dataset/chunk.ts): with `input` and method
 * propagate (src/method.ts; 'auto' picks it where every op has a moment rule), the moments
 * propagated through every layer at mu; with `input` and two-stage, the two-stage
 * linearization at mu (the input plus the noise mean, as `analyze` does by default) through
 * Linearizer.linearize and surrogateMoments. With a bank, input i uses the centre c nearest to mu_i:
 * m = zb_c + A_c (mu_i - xb_c) and c2 = gb_c - B_c relu(zb_c) + D_c (mu_i - xb_c), with A_c F (the
 * noise directions) formed once per centre (src/dataset/centres.ts); A_c (mu - xb) for a chunk's
 * inputs of one centre is one matrix product. Mean only (`variance: 'none'`) needs
 * s_v = |(A_c F)_v| per centre and nothing per input beyond m. Class probabilities share one
 * randomized-QMC point set (src/moments/sharedClassProbabilities.ts).
 */
import { createHash } from 'node:crypto';
import { Analyzer, VERSION } from '../analyze.js';
import { NetmomentsError } from '../errors.js';
import { sampleCount } from '../experiments/cli.js';
import type { Dataset } from '../data/dataset.js';
import { imageGeometry } from '../data/layout.js';
import { DiskBank, MemoryBank, estimateBank, readBankManifest, type Bank } from '../linearize/bank.js';
import { useCentreGram } from '../linearize/bankMoments.js';
import { jsLinearAlgebra } from '../moments/linalg.js';
import { SharedClassProbabilities } from '../moments/sharedClassProbabilities.js';
import type { LoadedModel } from '../onnx/load.js';
import { writeReportOutputs } from '../report/outputs.js';
import { REPORT_SCHEMA, reportFiles, type ReportHeader, type ReportSummary, type SampleRecord } from '../report/summary.js';
import { availableMemory, formatBytes, memoryLimit } from '../resources.js';
import { sha256Hex } from '../util/files.js';
import { CentreCache, centreAssigner, centreClasses } from './centres.js';
import { Checkpoint } from './checkpoint.js';
import { computeChunk, mcIndices, type ChunkContext } from './chunk.js';
import type { ReportOptions, ReportResult } from './options.js';
import { shardChunks } from './shards.js';

function noiseHeader(o: ReportOptions, analyzer: Analyzer): ReportHeader['noise'] {
  const spec = o.noise ?? { kind: 'isotropic' as const, sigma: 1 };
  const base: ReportHeader['noise'] = { kind: spec.kind, meanFile: o.noiseMeanFile ?? null, window: null, support: analyzer.noise.support.length };
  if (spec.kind === 'isotropic') base.sigma = spec.sigma;
  else {
    base.file = o.noiseFile;
    base.sha256 = sha256Hex(spec.kind === 'diagonal' ? spec.variance : spec.cov);
  }
  if (o.window) {
    base.window = [o.window.row, o.window.col, o.window.height, o.window.width];
    base.layout = imageGeometry(analyzer.input.shape, o.layout)!.layout;
  }
  return base;
}

/**
 * One pass over the data: every value finite, and the sha256 of the inputs in model units
 * (float32 little-endian bytes), read 1024 inputs at a time.
 */
function checkedDataSha256(dataset: Dataset, n: number, file: string): string {
  const count = dataset.size;
  const hash = createHash('sha256');
  for (let i0 = 0; i0 < count; i0 += 1024) {
    const i1 = Math.min(count, i0 + 1024);
    const xs = dataset.getBatch(Array.from({ length: i1 - i0 }, (_, t) => i0 + t));
    for (let k = 0; k < xs.length; k++) {
      if (!Number.isFinite(xs[k])) throw new NetmomentsError(`input ${i0 + Math.floor(k / n)} holds a non-finite value at element ${k % n}`, { file });
    }
    hash.update(new Uint8Array(xs.buffer, xs.byteOffset, xs.byteLength));
  }
  return hash.digest('hex');
}

/** One label per input, each one of the d output classes. */
function checkLabels(labels: Int32Array, count: number, d: number, file: string): void {
  if (labels.length !== count) throw new NetmomentsError(`${labels.length} labels for ${count} inputs`, { file });
  for (let i = 0; i < count; i++) {
    if (labels[i] >= d) throw new NetmomentsError(`label ${labels[i]} of input ${i} is not one of the ${d} output classes`, { file });
  }
}

/**
 * The run's fingerprint: the sha256 of everything that changes a number of the report (model,
 * data, labels, split, output, noise with its files' contents, linearization, run options), and
 * nothing that does not (file names, the bank's folder). Checkpoints and shards match on it.
 */
function runFingerprint(header: ReportHeader, o: ReportOptions, labels: Int32Array | undefined): string {
  const fpInput = {
    schema: REPORT_SCHEMA,
    version: VERSION,
    model: header.run.modelSha256,
    data: header.data.sha256,
    labels: labels ? sha256Hex(labels) : null,
    split: header.split?.index ?? null,
    // (two-stage fingerprints stay as they were before the method existed)
    method: header.method === 'propagate' ? { method: header.method, rank: header.rank } : undefined,
    output: header.output.name,
    noise: { ...header.noise, file: undefined, meanFile: undefined, meanSha256: o.noiseMean ? sha256Hex(o.noiseMean) : null },
    linearization: { ...header.linearization, bank: undefined, maxIterations: o.linearize.kind === 'kmeans' ? (o.kmeans?.maxIterations ?? 100) : undefined },
    run: { ...header.run, fingerprint: undefined },
  };
  return sha256Hex(JSON.stringify(fpInput));
}

/** Run (or resume, or finish) a dataset report. */
export async function runReport(model: LoadedModel, dataset: Dataset, options: ReportOptions): Promise<ReportResult> {
  const o = options;
  const warn = o.onWarning ?? (() => {});
  const count = dataset.size;
  if (count === 0) throw new NetmomentsError('holds no inputs', { file: o.dataFile });
  const variance = o.variance ?? 'exact';
  const mc = o.mc ?? 0;
  if (!(Number.isInteger(mc) && mc >= 0) || mc === 1) throw new NetmomentsError(`--mc must be 0 or a whole number >= 2, got ${mc}`, { code: 'BAD_USAGE' });
  const mcInputs = o.mcInputs ?? 10;
  const trustCheck = mc > 0 ? 0 : sampleCount('trust-check', o.trustCheck ?? 0);
  if (!(Number.isInteger(mcInputs) && mcInputs >= 1))
    throw new NetmomentsError(`--mc-inputs must be a whole number >= 1, got ${mcInputs}`, { code: 'BAD_USAGE' });
  const probabilitySamples = o.probabilitySamples ?? 8192;
  const chunk = o.chunk ?? (o.linearize.kind === 'input' ? 16 : 1024);
  if (!(Number.isInteger(chunk) && chunk >= 1)) throw new NetmomentsError(`--chunk must be a whole number >= 1, got ${chunk}`, { code: 'BAD_USAGE' });
  if (o.shard && o.linearize.kind === 'kmeans') {
    throw new NetmomentsError(
      `--shard with --linearize kmeans:${o.linearize.k} would cluster in every shard; build the bank once (netmoments bank MODEL --data ${o.dataFile} --k ${o.linearize.k} --out-dir BANK) and give every shard --linearize bank:BANK`,
      { code: 'BAD_USAGE' },
    );
  }
  if (variance === 'none' && mc > 0) warn('--variance none: the Monte Carlo columns compare means only');
  const la = o.linalg ?? jsLinearAlgebra;

  // the bank's split comes first: without --relu a bank decides it
  let relu = o.relu;
  let output = o.output;
  if (o.linearize.kind === 'bank') {
    const { manifest } = readBankManifest(o.linearize.path);
    if (relu === undefined) relu = manifest.split.index;
    if (output === undefined) output = manifest.output.name;
  }
  // a bank is a set of linearization points: two-stage's
  const bankRun = o.linearize.kind !== 'input';
  if (bankRun && o.method === 'propagate')
    warn(
      `--linearize ${o.linearize.kind === 'kmeans' ? `kmeans:${o.linearize.k}` : 'bank:DIR'} linearizes at bank centres, which only two-stage does: using two-stage`,
    );
  const noiseSpec = o.noise ?? { kind: 'isotropic' as const, sigma: 1 };
  const held = o.engines && !bankRun ? o.engines.map((a) => a.withNoise(noiseSpec, o.noiseFile)).find((a) => a !== undefined) : undefined;
  const analyzer =
    held ??
    (await Analyzer.create(model, {
      ...o,
      ...(bankRun ? { method: 'two-stage' as const, methodReason: `--linearize ${o.linearize.kind} linearizes at bank centres` } : {}),
      relu,
      output,
      variance: variance === 'none' ? 'none' : 'exact',
      // the expected state changes of the layers held fixed feed each input's trust verdict (about a
      // quarter more time per linearized input on LeNet; bank centres do not have them)
      flips: true,
      mc: 0,
      probabilitySamples,
    }));
  if (!held && o.engines && !bankRun) o.engines.push(analyzer);
  try {
    const linearizer = analyzer.method === 'two-stage' ? analyzer.linearizer : undefined;
    const { n, d } = analyzer;
    const p = linearizer?.p ?? 0;
    const dataSha = checkedDataSha256(dataset, n, o.dataFile);
    const labels = dataset.labels;
    if (labels) checkLabels(labels, count, d, o.labelsFile ?? o.dataFile);
    if (o.linearize.kind === 'kmeans') {
      // refuse a K that cannot be clustered or whose bank would not fit, before any other work
      const k = o.linearize.k;
      if (k > count)
        throw new NetmomentsError(`--linearize kmeans:${k} needs at least ${k} inputs to cluster, the data holds ${count}`, {
          file: o.dataFile,
          code: 'BAD_USAGE',
        });
      const est = estimateBank({ n, p, d, skip: analyzer.linearizer.skip.length > 0 }, k);
      const limit = o.maxBankBytes ?? (o.maxMemory !== undefined ? memoryLimit(o.maxMemory).bytes : Math.floor(availableMemory() * 0.5));
      if (est.total > limit) {
        throw new NetmomentsError(
          `a bank of ${est.text} does not fit in the ${formatBytes(limit)} of memory this run may use${o.maxMemory !== undefined ? ' (--max-memory)' : ''}; lower K, or build it on disk once with \`netmoments bank\` and pass --linearize bank:DIR`,
          { code: 'RESOURCE', file: model.file },
        );
      }
    }

    let bank: Bank | undefined;
    let bankHeader: ReportHeader['linearization'] = { mode: 'input', k: null, bank: null, bankId: null, point: null, seed: null };
    if (o.linearize.kind === 'bank') {
      bank = DiskBank.open(o.linearize.path, {
        modelSha256: model.sha256,
        modelFile: model.file,
        relu: analyzer.linearizer.split.index,
        output: analyzer.output.name,
        inputSize: n,
      });
      bankHeader = {
        mode: 'bank',
        k: bank.k,
        bank: o.linearize.path,
        bankId: bank.id,
        point: bank.manifest.point,
        seed: bank.manifest.kmeans.seed,
        fallback: o.bankFallback !== false,
      };
    } else if (o.linearize.kind === 'kmeans') {
      const seed = o.kmeans?.seed ?? 0;
      bankHeader = {
        mode: 'kmeans',
        k: o.linearize.k,
        bank: null,
        bankId: null,
        point: o.kmeans?.point ?? 'centroid',
        seed,
        fallback: o.bankFallback !== false,
      };
    }

    const qmc = variance === 'exact' ? new SharedClassProbabilities(d, probabilitySamples, o.seed ?? 0, 8, la) : undefined;
    const header: ReportHeader = {
      model: model.file,
      data: { file: o.dataFile, labels: labels ? (o.labelsFile ?? o.dataFile) : null, count, sha256: dataSha },
      method: analyzer.method,
      methodReason: analyzer.decision.reason,
      ...(analyzer.decision.rank !== undefined ? { rank: analyzer.decision.rank } : {}),
      split: analyzer.split,
      output: { name: analyzer.output.name, shape: analyzer.output.shape, size: d },
      noise: noiseHeader(o, analyzer),
      linearization: bankHeader,
      run: {
        version: VERSION,
        modelSha256: model.sha256,
        seed: o.seed ?? 0,
        fingerprint: '',
        variance,
        perLogit: !!o.perLogit,
        probabilitySamples: qmc ? qmc.samples : 0,
        mc: mc > 0 ? { samples: mc, inputs: Math.min(mcInputs, count) } : null,
        ...(trustCheck > 0 ? { trustCheck: { samples: trustCheck, inputs: Math.min(mcInputs, count) } } : {}),
        chunk,
        jacobian: analyzer.jacobianMode,
      },
    };
    header.run.fingerprint = runFingerprint(header, o, labels);

    const chunks = Math.ceil(count / chunk);
    const mine = shardChunks(chunks, o.shard);
    if (o.shard) {
      header.shard = { index: o.shard.index, count: o.shard.count, chunks: mine };
      if (mine.length === 0)
        warn(
          `shard ${o.shard.index}/${o.shard.count} has no inputs: ${count} inputs make ${chunks} chunk(s) of ${chunk}; lower --chunk to spread them over ${o.shard.count} shards`,
        );
    }

    let checkpoint: Checkpoint | undefined;
    if (o.outDir) {
      const opened = Checkpoint.open(
        { outDir: o.outDir, fingerprint: header.run.fingerprint, shard: o.shard, chunk, chunks, count, mine, resume: !!o.resume },
        warn,
      );
      if ('complete' in opened) {
        const summary = JSON.parse(opened.complete['summary.json']) as ReportSummary;
        warn(`${o.outDir} already holds the complete report of this run; nothing to resume`);
        return { summary, files: opened.complete, records: [], computed: 0, resumed: summary.inputs, seconds: 0, cpuSeconds: 0, alreadyComplete: true };
      }
      checkpoint = opened.checkpoint;
    }
    const done = checkpoint?.done ?? new Map<number, SampleRecord[]>();
    try {
      const todo = mine.filter((ci) => !done.has(ci));
      if (todo.length > 0 && o.linearize.kind === 'kmeans') {
        const k = o.linearize.k;
        o.onPhase?.('bank', k, 0);
        bank = await MemoryBank.build(analyzer.linearizer, dataset.getBatch(Array.from({ length: count }, (_, i) => i)), count, {
          k,
          seed: o.kmeans?.seed ?? 0,
          maxIterations: o.kmeans?.maxIterations,
          point: o.kmeans?.point,
          dataFile: o.dataFile,
          version: VERSION,
          maxBytes: Number.MAX_SAFE_INTEGER, // checked above
          onProgress: (stage, dn) => {
            if (stage === 'centre') o.onProgress?.(dn);
          },
        });
      }
      const ctx: ChunkContext = {
        model,
        analyzer,
        linearizer,
        n,
        p,
        d,
        dataset,
        labels,
        count,
        bank,
        cache: bank
          ? new CentreCache(
              bank,
              analyzer.factor,
              la,
              Math.max(64 << 20, Math.floor(Math.min(2 ** 31, availableMemory() * 0.25))),
              variance === 'none' ? 'mean' : useCentreGram(p, analyzer.factor.r) ? 'gram' : 'engine',
            )
          : undefined,
        assign: bank ? centreAssigner(bank, n, la, o.bankFallback !== false ? centreClasses(bank) : undefined) : undefined,
        qmc,
        la,
        options: o,
        mcSet: mc > 0 || trustCheck > 0 ? mcIndices(count, mcInputs) : new Set(),
        trustCheck,
        chunk,
      };
      const inputsOf = (ci: number) => Math.min(count, (ci + 1) * chunk) - ci * chunk;
      const resumed = [...done.keys()].reduce((a, ci) => a + inputsOf(ci), 0);
      const total = mine.reduce((a, ci) => a + inputsOf(ci), 0);
      o.onPhase?.('inputs', total, resumed);
      let progress = resumed;
      // onnxruntime's Gemm sessions are made on first use: make them now, with the other sessions
      for (const opts of [{ transB: true }, {}]) await la.gemm(new Float64Array(64 * 64), 64, 64, new Float64Array(64 * 64), 64, 64, opts);
      const t0 = performance.now();
      const cpu0 = process.cpuUsage();
      let computed = 0;
      for (const ci of todo) {
        const recs = await computeChunk(ctx, ci, (k) => o.onProgress?.(progress + k));
        checkpoint?.save(ci, recs);
        done.set(ci, recs);
        computed += recs.length;
        progress += recs.length;
        o.onProgress?.(progress);
      }
      const seconds = (performance.now() - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      const cpuSeconds = (cpu.user + cpu.system) / 1e6;
      const records: SampleRecord[] = [];
      for (const ci of mine) records.push(...done.get(ci)!);
      const { files, summary } = reportFiles(header, records);
      if (o.outDir) {
        writeReportOutputs(o.outDir, files);
        checkpoint?.remove();
      }
      return { summary, files, records, computed, resumed, seconds, cpuSeconds, alreadyComplete: false };
    } catch (e) {
      // a bad input fails the same way under --resume: the checkpoint goes; resource errors keep it
      if (e instanceof NetmomentsError && e.code === 'BAD_INPUT') checkpoint?.discardIfFresh();
      throw e;
    }
  } finally {
    // held engines are the caller's to release
    if (!(o.engines && !bankRun)) await analyzer.release();
  }
}
