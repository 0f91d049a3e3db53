/**
 * Stage timings on stderr for finding where a long run spends its time and memory: off unless the
 * environment variable NETMOMENTS_TIMING is set (a development aid; nothing in the reports depends
 * on it). `const done = stage('bottom Gram'); ...; done()` prints wall and CPU seconds of the stage
 * and the process's resident memory at its end.
 */
const enabled = (): boolean => !!process.env.NETMOMENTS_TIMING;

export function stage(label: string): (extra?: string) => void {
  if (!enabled()) return () => {};
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  return (extra?: string) => {
    const c = process.cpuUsage(c0);
    const wall = (performance.now() - t0) / 1000;
    const cpu = (c.user + c.system) / 1e6;
    const rss = process.memoryUsage.rss() / 2 ** 30;
    process.stderr.write(
      `netmoments timing: ${label}: ${wall.toFixed(1)} s wall, ${cpu.toFixed(1)} s CPU, rss ${rss.toFixed(2)} GiB${extra ? `; ${extra}` : ''}\n`,
    );
  };
}
