/**
 * The image's HEALTHCHECK: the daemon answers /health on its metrics listener (which the image turns on inside the
 * container only, MATRIX_REGSERVICE_METRICS_PORT). Exits 0 when it does, 1 otherwise; no shell or curl needed.
 */
const port = process.env.MATRIX_REGSERVICE_METRICS_PORT ?? '9009';
try {
  const response = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(4000) });
  process.exitCode = response.ok ? 0 : 1;
} catch {
  process.exitCode = 1;
}
