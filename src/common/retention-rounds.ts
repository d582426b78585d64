export const DAY_MS = 24 * 60 * 60 * 1000;
const PURGE_EVERY_MS = 10 * 60 * 1000;
/** The first purge waits this long after boot, so that it does not compete with the models' warm-up. */
const FIRST_PURGE_AFTER_MS = 60 * 1000;

/**
 * A retention purge run a minute after boot and then every 10 minutes, one round at a time. A round that
 * fails (the database away) is reported and the next round tries again. `stop` ends the rounds and waits
 * for one in progress, so that the database is not closed under it.
 */
export class RetentionRounds {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> | undefined;

  constructor(
    private readonly purge: () => Promise<unknown>,
    private readonly failed: (error: unknown) => void,
  ) {}

  start(): void {
    const round = (delay: number): void => {
      this.timer = setTimeout(() => {
        this.running = this.purge()
          .catch(this.failed)
          .finally(() => {
            this.running = undefined;
            if (this.timer !== undefined) round(PURGE_EVERY_MS);
          });
      }, delay).unref();
    };
    round(FIRST_PURGE_AFTER_MS);
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
