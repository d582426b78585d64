import { Injectable } from '@nestjs/common';

export interface ReadinessCheck {
  ready: boolean;
  /** Shown on /health/ready; must not carry secrets or patient data. */
  detail?: unknown;
}

/**
 * Modules register what "ready" means for them (the runtime: every default model loaded and
 * warm); /health/ready is ready when all of them are, and nobody is shutting down.
 */
@Injectable()
export class ReadinessService {
  private readonly checks = new Map<string, () => ReadinessCheck>();
  private shuttingDown = false;

  register(name: string, check: () => ReadinessCheck): void {
    this.checks.set(name, check);
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
