import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { BatcherObserver } from './batcher/batcher';

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];

/** The runtime's Prometheus series; names are listed in the README. */
export class RuntimeMetrics {
  readonly requests: Counter<'model' | 'version' | 'outcome'>;
  readonly queueSeconds: Histogram<'model' | 'version'>;
  readonly computeSeconds: Histogram<'model' | 'version'>;
  readonly batchSize: Histogram<'model' | 'version'>;
  readonly queueDepth: Gauge<'model' | 'version'>;
  readonly provider: Gauge<'model' | 'version' | 'provider'>;
  readonly workersReady: Gauge;
  readonly workerFailures: Counter<'cause'>;
  readonly workersStuck: Gauge;

  constructor(registry: Registry) {
    const registers = [registry];
    const labelNames = ['model', 'version'] as const;
    this.requests = new Counter({
      name: 'gateway_inference_requests_total',
      help: 'Inference requests by model, version and outcome (ok, invalid, queue_full, deadline_exceeded, not_ready, error, shutting_down)',
      labelNames: [...labelNames, 'outcome'],
      registers,
    });
    this.queueSeconds = new Histogram({
      name: 'gateway_inference_queue_seconds',
      help: 'Time a request waited in the batcher before its batch started',
      labelNames,
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.computeSeconds = new Histogram({
      name: 'gateway_inference_compute_seconds',
      help: 'ONNX Runtime run() time per batch',
      labelNames,
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.batchSize = new Histogram({
      name: 'gateway_inference_batch_size',
      help: 'Rows per executed batch',
      labelNames,
      buckets: BATCH_BUCKETS,
      registers,
    });
    this.queueDepth = new Gauge({
      name: 'gateway_inference_queue_depth',
      help: 'Requests waiting in the batcher',
      labelNames,
      registers,
    });
    this.provider = new Gauge({
      name: 'gateway_model_execution_provider',
      help: 'Execution provider each loaded model version runs on (value 1)',
      labelNames: [...labelNames, 'provider'],
      registers,
    });
    this.workersReady = new Gauge({
      name: 'gateway_inference_workers_ready',
      help: 'Inference worker threads loaded and serving',
      registers,
    });
    this.workerFailures = new Counter({
      name: 'gateway_inference_worker_failures_total',
      help: 'Inference workers lost (exited), replacements that failed to load or did not in time (load_failed), runs past their limit (stalled)',
      labelNames: ['cause'],
      registers,
    });
    this.workersStuck = new Gauge({
      name: 'gateway_inference_workers_stuck',
      help: 'Threads of stalled inference workers that have not stopped (inside ONNX Runtime, which cannot be interrupted)',
      registers,
    });
  }

  observerFor(model: string, version: string): BatcherObserver {
    const labels = { model, version };
    return {
      batch: (rows, computeMs) => {
        this.batchSize.observe(labels, rows);
        this.computeSeconds.observe(labels, computeMs / 1000);
      },
      queued: (queueMs) => this.queueSeconds.observe(labels, queueMs / 1000),
      outcome: (outcome) => this.requests.inc({ ...labels, outcome }),
      depth: (waiting) => this.queueDepth.set(labels, waiting),
    };
  }
}
