import { isIPv6 } from 'node:net';
import { ConsoleLogger } from '@nestjs/common';

/**
 * Where Nest logs an error it then throws to its caller: ExceptionHandler (a provider that failed, rethrown
 * with abortOnError off), NestApplication (a listen that failed, rejected).
 */
const NEST_REPORTS_OF_THROWN = new Set(['ExceptionHandler', 'NestApplication']);

/**
 * The gateway's logger: Nest's ConsoleLogger, less Nest's own reports (one with a stack) of errors it
 * throws to the caller, which reports them itself: main.ts, for a failed boot, in one line
 * (reportBootFailure).
 */
export class GatewayLogger extends ConsoleLogger {
  override error(message: unknown, ...rest: unknown[]): void {
    const context = rest[rest.length - 1];
    if (typeof context === 'string' && NEST_REPORTS_OF_THROWN.has(context)) return;
    super.error(message, ...rest);
  }
}

/** Errors the language raises: a bug in the gateway, whose stack is worth printing. */
const BUGS = [TypeError, ReferenceError, RangeError, SyntaxError, EvalError, URIError];

/** What a failed listen's errno means to whoever set the address and port. */
const LISTEN_ERRORS: Record<string, string> = {
  EADDRINUSE: 'the port is in use by another process',
  EACCES: 'not permitted (a port below 1024 needs privileges)',
  EADDRNOTAVAIL: 'no network interface of this machine has that address',
};

/**
 * Why the boot failed, as one line: the error's own message (what the gateway says on purpose: a bad
 * variable, no keys in production, a database it cannot reach, a port in use), and each cause the message
 * does not already tell. A bug's stack comes with it; an expected error's would only bury the reason.
 */
export function describeBootFailure(error: unknown): { error: string; stack?: string } {
  if (!(error instanceof Error)) return { error: String(error) };
  const { code, syscall, address, port, hostname } = error as NodeJS.ErrnoException & {
    address?: string;
    port?: number;
    hostname?: string;
  };
  const host = address !== undefined && isIPv6(address) ? `[${address}]` : address;
  let line =
    syscall === 'listen' && typeof code === 'string'
      ? `cannot listen on ${host ?? ''}:${port ?? ''}: ${LISTEN_ERRORS[code] ?? error.message}`
      : // The listen's own lookup of HOST (the database's and the broker's are reported naming their variables).
        syscall === 'getaddrinfo' && hostname !== undefined
        ? `cannot listen on ${hostname}: the name does not resolve (${code ?? error.message}); set HOST to an address or a name of this machine`
        : error.message;
  for (let cause = error.cause, depth = 0; cause instanceof Error && depth < 3; cause = cause.cause, depth++) {
    if (!line.includes(cause.message)) line += `: ${cause.message}`;
  }
  const bug = BUGS.some((type) => error instanceof type);
  return bug && error.stack ? { error: line, stack: error.stack } : { error: line };
}

/** Logs a failed boot as one JSON line on stderr, as every other log line of the gateway is written. */
export function reportBootFailure(error: unknown): void {
  new ConsoleLogger('Bootstrap', { json: true }).fatal({ msg: 'boot failed', ...describeBootFailure(error) });
}
