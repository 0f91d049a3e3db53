/**
 * Progress bars for long work: cli-progress on stderr, only when stderr is a TTY (never in CI logs
 * or pipes), with rate and ETA.
 */
import cliProgress from 'cli-progress';

export interface Progress {
  update(done: number): void;
  stop(): void;
}

export function progressBar(label: string, total: number, stream: NodeJS.WriteStream = process.stderr): Progress | undefined {
  if (!stream.isTTY) return undefined;
  const bar = new cliProgress.SingleBar(
    {
      stream,
      format: `${label} [{bar}] {value}/{total} | {rate}/s | ETA {eta_formatted}`,
      hideCursor: true,
      clearOnComplete: true,
      etaBuffer: 20,
    },
    cliProgress.Presets.shades_classic,
  );
  const start = Date.now();
  bar.start(total, 0, { rate: '0.0' });
  return {
    update(done: number) {
      const secs = (Date.now() - start) / 1000;
      bar.update(done, { rate: secs > 0 ? (done / secs).toFixed(1) : '0.0' });
    },
    stop() {
      bar.stop();
    },
  };
}
