import { Injectable } from '@nestjs/common';
import { Gauge } from 'prom-client';
import { MetricsService } from '../metrics/metrics.service';

export interface ReadinessCheck {
  ready: boolean;
  /** Shown on /health/ready to a caller with models:read only; must not carry secrets or patient data. */
  detail?: unknown;
}

/**
 * The checks as /health/ready shows them to anyone (an orchestrator's probe, a load balancer): each by name,
 * ready or not, without its detail, which names models and versions, workers, the execution provider and why
 * the audit trail or the broker fails; internal state a caller without a token has no need of.
 */
export function publicChecks(checks: Record<string, ReadinessCheck>): Record<string, ReadinessCheck> {
  return Object.fromEntries(Object.entries(checks).map(([name, check]) => [name, { ready: check.ready }]));
}

/**
 * Modules register what "ready" means for them (the runtime: every default model loaded and
 * warm); /health/ready is ready when all of them are, and nobody is shutting down. A few also say
 * what "live" means: a state only a restart ends (/health/live answers 503 while one is not live).
 */
@Injectable()
export class ReadinessService {
  private readonly checks = new Map<string, () => ReadinessCheck>();
  private readonly liveChecks = new Map<string, () => boolean>();
  private shuttingDown = false;

  constructor(metrics: MetricsService) {
    const checksNow = () => this.evaluate().checks;
    // Each check as /health/ready sees it at the scrape, for alerts on the component rather than the whole.
    new Gauge({
      name: 'gateway_readiness_check',
      help: 'Whether each /health/ready check is ready (1) or not (0), by check',
      labelNames: ['check'],
      registers: [metrics.registry],
      collect() {
        this.reset();
        for (const [check, { ready }] of Object.entries(checksNow())) this.set({ check }, ready ? 1 : 0);
      },
    });
  }

  register(name: string, check: () => ReadinessCheck): void {
    this.checks.set(name, check);
  }

  registerLiveness(name: string, live: () => boolean): void {
    this.liveChecks.set(name, live);
  }

  /** The names of the liveness checks that fail (none: live). */
  failingLiveness(): string[] {
    const failing: string[] = [];
    for (const [name, live] of this.liveChecks) if (!live()) failing.push(name);
    return failing;
  }

  markShuttingDown(): void {
    this.shuttingDown = true;
  }

  evaluate(): { ready: boolean; checks: Record<string, ReadinessCheck> } {
    const checks: Record<string, ReadinessCheck> = {};
    let ready = !this.shuttingDown && this.checks.size > 0;
    for (const [name, check] of this.checks) {
      const result = check();
      checks[name] = result;
      ready &&= result.ready;
    }
    if (this.shuttingDown) checks.shutdown = { ready: false, detail: 'shutting down' };
    return { ready, checks };
  }
}
