/* global process */
// Preloaded by the soak (`node --expose-gc --import ./gc-probe.mjs dist/main.js`): on SIGUSR2 the
// measured process runs a full garbage collection and writes one JSON line with its memory to stderr,
// so memory is compared after collection rather than at wherever the collector happened to be.
process.on("SIGUSR2", () => {
  globalThis.gc?.();
  const m = process.memoryUsage();
  process.stderr.write(
    `${JSON.stringify({ gcProbe: { rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers } })}\n`,
  );
});
