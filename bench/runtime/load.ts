import { Agent, request } from 'node:http';

export interface LoadResult {
  requests: number;
  seconds: number;
  throughput: number;
  p50: number;
  p99: number;
  errors: number;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

export function summarise(latencies: number[], seconds: number, errors = 0): LoadResult {
  const sorted = [...latencies].sort((a, b) => a - b);
  return {
    requests: latencies.length,
    seconds,
    throughput: latencies.length / seconds,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    errors,
  };
}

/** Runs `total` calls of `task` with `concurrency` in flight; a bounded loop, latencies in ms. */
export async function closedLoop(total: number, concurrency: number, task: () => Promise<void>): Promise<LoadResult> {
  const latencies: number[] = [];
  let next = 0;
  let errors = 0;
  const started = performance.now();
  const lane = async (): Promise<void> => {
    while (next < total) {
      next++;
      const t0 = performance.now();
      try {
        await task();
        latencies.push(performance.now() - t0);
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  return summarise(latencies, (performance.now() - started) / 1000, errors);
}

/** POSTs prepared bodies (one, or several in turn) over keep-alive connections; rejects on a non-200 answer. */
export function poster(
  port: number,
  path: string,
  body: string | Buffer | Buffer[],
  concurrency: number,
  headers: Record<string, string> = { 'content-type': 'application/json' },
): () => Promise<void> {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const payloads = Array.isArray(body) ? body : [Buffer.isBuffer(body) ? body : Buffer.from(body)];
  let next = 0;
  return () =>
    new Promise<void>((resolve, reject) => {
      const payload = payloads[next++ % payloads.length];
      const req = request(
        {
          host: '127.0.0.1',
          port,
          path,
          method: 'POST',
          agent,
          headers: { ...headers, 'content-length': payload.length },
        },
        (res) => {
          res.resume();
          res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))));
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
}
