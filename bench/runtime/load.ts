import { connect, type Socket } from 'node:net';

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

/**
 * POSTs prepared bodies (one, or several in turn) over `concurrency` keep-alive connections;
 * rejects on a non-200 answer. Each request is written as prepared bytes in one write and only the
 * status line and body length of the answer are read: node:http's client cost about as much CPU
 * per request as the gateway's own work, and on a 2-core machine the load generator shares the
 * cores with the gateway it measures.
 */
export function poster(
  port: number,
  path: string,
  body: string | Buffer | Buffer[],
  concurrency: number,
  headers: Record<string, string> | ((index: number) => Record<string, string>) = {
    'content-type': 'application/json',
  },
): () => Promise<void> {
  const bodies = Array.isArray(body) ? body : [Buffer.isBuffer(body) ? body : Buffer.from(body)];
  /** The headers of the index-th prepared request (a function gives each its own, e.g. an Idempotency-Key). */
  const head = (index: number): string =>
    Object.entries(typeof headers === 'function' ? headers(index) : headers)
      .filter(([name]) => name.toLowerCase() !== 'content-length')
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join('');
  const requests = bodies.map((b, index) =>
    Buffer.concat([
      Buffer.from(
        `POST ${path} HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\n${head(index)}content-length: ${b.length}\r\n\r\n`,
      ),
      b,
    ]),
  );
  const idle: HttpConnection[] = [];
  let open = 0;
  let next = 0;
  return async () => {
    const connection = idle.pop() ?? (open < concurrency ? (open++, new HttpConnection(port)) : undefined);
    if (!connection) throw new Error(`more than ${concurrency} requests at once`);
    try {
      const status = await connection.send(requests[next++ % requests.length]);
      if (status !== 200) throw new Error(`HTTP ${status}`);
    } finally {
      if (connection.usable) idle.push(connection);
      else open--;
    }
  };
}

const HEADER_END = Buffer.from('\r\n\r\n');

/** One keep-alive HTTP/1.1 connection, one request at a time; answers with Content-Length or chunked bodies. */
class HttpConnection {
  private readonly socket: Socket;
  private buffer: Buffer = Buffer.alloc(0);
  private waiting: { resolve: (status: number) => void; reject: (error: Error) => void } | undefined;
  usable = true;

  constructor(port: number) {
    this.socket = connect({ host: '127.0.0.1', port, noDelay: true });
    this.socket.on('data', (chunk: Buffer) => {
      this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
      this.parse();
    });
    const fail = (error: Error): void => {
      this.usable = false;
      this.waiting?.reject(error);
      this.waiting = undefined;
    };
    this.socket.on('error', fail);
    this.socket.on('close', () => fail(new Error('connection closed')));
    this.socket.unref();
  }

  send(request: Buffer): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      this.waiting = { resolve, reject };
      this.socket.write(request);
    });
  }

  /** Completes the waiting request once its whole answer is in the buffer. */
  private parse(): void {
    const end = this.buffer.indexOf(HEADER_END);
    if (end < 0 || !this.waiting) return;
    const header = this.buffer.toString('latin1', 0, end);
    const status = Number(header.slice(9, 12));
    const length = /\r\ncontent-length: *(\d+)/i.exec(header);
    let bodyEnd: number;
    if (length) {
      bodyEnd = end + 4 + Number(length[1]);
      if (this.buffer.length < bodyEnd) return;
    } else if (/\r\ntransfer-encoding: *chunked/i.test(header)) {
      const last = this.buffer.indexOf('\r\n0\r\n\r\n', end + 2);
      if (last < 0) return;
      bodyEnd = last + 7;
    } else {
      bodyEnd = end + 4;
    }
    this.buffer = this.buffer.subarray(bodyEnd);
    if (/\r\nconnection: *close/i.test(header)) {
      this.usable = false;
      this.socket.destroy();
    }
    const { resolve } = this.waiting;
    this.waiting = undefined;
    resolve(status);
  }
}
