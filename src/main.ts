import 'reflect-metadata';
import { type AddressInfo, isIPv6 } from 'node:net';
import { ConsoleLogger, Logger } from '@nestjs/common';
import { createApp } from './app.factory';
import { ReadinessService } from './common/health/readiness.service';
import { reportBootFailure } from './boot-failure';
import { loadConfig } from './config/app-config';
import { InferenceEngine } from './runtime/inference-engine.service';

// Node's own warnings (a driver's security or deprecation notice, such as pg's on sslmode=require) go out as JSON log
// lines like every other line, not as plain text on stderr, which holds one line only when the boot fails.
process.removeAllListeners('warning');
process.on('warning', (warning) => {
  const code = (warning as Error & { code?: string }).code;
  new ConsoleLogger('Process', { json: true }).warn({
    msg: warning.message,
    warning: warning.name,
    ...(code ? { code } : {}),
  });
});

/** The engine, once the app exists: a boot that fails may leave a thread stuck in ONNX Runtime (see the catch below). */
let engine: InferenceEngine | undefined;

async function bootstrap(): Promise<void> {
  const config = loadConfig();
  const app = await createApp(config);
  const logger = new Logger('Bootstrap');
  engine = app.get(InferenceEngine);
  /**
   * Node's exit joins every worker thread, and one stalled inside ONNX Runtime (native code, which cannot be
   * interrupted) would hold the exit until its run returns, perhaps never: with such a thread, the process
   * ends by SIGKILL instead, once the shutdown has done all it could.
   */
  const exit = (code: number): never => {
    const stuckThreads = engine?.stuckThreads ?? 0;
    if (stuckThreads > 0) {
      logger.error({
        msg: 'inference threads stuck in ONNX Runtime cannot be stopped; ending the process with SIGKILL',
        stuckThreads,
        exitCode: code,
      });
      process.kill(process.pid, 'SIGKILL');
    }
    process.exit(code);
  };
  // Graceful shutdown: stop accepting, finish in-flight requests and queued inference, then exit.
  let stopping = false;
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    // on, not once: a second signal (Ctrl-C twice, a supervisor repeating SIGTERM) would otherwise meet
    // Node's default and kill the process mid-shutdown, its answers, final audit anchors and database
    // close with it. SHUTDOWN_GRACE_MS bounds the wait either way.
    process.on(signal, () => {
      if (stopping) {
        logger.warn({ msg: 'already shutting down; signal ignored', signal });
        return;
      }
      stopping = true;
      logger.log({
        msg: 'shutting down',
        signal,
        drainMs: config.SHUTDOWN_DRAIN_MS,
        graceMs: config.SHUTDOWN_GRACE_MS,
      });
      // Not ready at once, so that load balancers stop sending; requests are still served until the drain ends.
      app.get(ReadinessService).markShuttingDown();
      setTimeout(() => {
        if (config.SHUTDOWN_DRAIN_MS > 0) logger.log({ msg: 'drain over; closing' });
        setTimeout(() => {
          logger.error({ msg: 'shutdown grace period over; exiting with work still in flight' });
          exit(1);
        }, config.SHUTDOWN_GRACE_MS).unref();
        app.close().then(
          () => exit(0),
          (error: unknown) => {
            logger.error({ msg: 'error during shutdown', error: String(error) });
            exit(1);
          },
        );
      }, config.SHUTDOWN_DRAIN_MS);
    });
  }
  await app.listen(config.PORT, config.HOST);
  // The port bound, not the one asked for: PORT=0 asks the system for a free one.
  const bound = app.getHttpServer().address() as AddressInfo;
  const host = isIPv6(bound.address) ? `[${bound.address}]` : bound.address;
  logger.log({ msg: 'listening', url: `http://${host}:${bound.port}`, docs: '/docs' });
}

// A bad variable, missing keys, a database out of reach, a port in use: one line, and exit 1. A model load given
// up on inside ONNX Runtime (MODEL_LOAD_TIMEOUT_MS) left its thread there, which holds process.exit() for as long
// as it hangs: the line says so, and SIGKILL ends the process.
bootstrap().catch((error: unknown) => {
  reportBootFailure(error);
  if ((engine?.stuckThreads ?? 0) > 0) process.kill(process.pid, 'SIGKILL');
  process.exit(1);
});
