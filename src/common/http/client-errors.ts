import { maxHeaderSize, STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { AppError, ErrorCode } from '../errors/app-error';
import { Problem, PROBLEM_CONTENT_TYPE, problemOf } from '../errors/problem';
import { securityHeaders } from './security-headers';

/** What Node's HTTP server reports with a `clientError`: llhttp's code and reason, or a request timeout. */
export interface ClientError extends Error {
  code?: string;
  reason?: string;
}

/** Plain words for the parse errors a broken or hostile client causes most. */
const PARSE_REASONS: Record<string, string> = {
  HPE_INVALID_HEADER_TOKEN: 'a header name or value holds a character that HTTP does not allow',
  HPE_INVALID_URL: 'the request target holds a character that HTTP does not allow (percent-encode spaces and the like)',
  HPE_INVALID_EOF_STATE: 'the connection ended before the whole request arrived',
  HPE_INVALID_CONSTANT:
    'the request line is not "METHOD target HTTP/1.1" (a space in the target, say: percent-encode it)',
  HPE_INVALID_METHOD: 'the request method is not valid',
  HPE_INVALID_VERSION: 'the HTTP version is not valid',
  HPE_INVALID_CONTENT_LENGTH: 'Content-Length is not valid',
  HPE_UNEXPECTED_CONTENT_LENGTH: 'Content-Length and Transfer-Encoding are both set',
  HPE_INVALID_TRANSFER_ENCODING: 'Transfer-Encoding is not valid',
  HPE_INVALID_CHUNK_SIZE: 'a chunk size of the chunked body is not valid',
};

/**
 * The answer to a request that Node's HTTP parser refused before any route saw it (a header with a
 * control character, a space in the URL, headers over the size limit, a request not received in
 * time): problem+json, as every other refusal, rather than Fastify's own JSON, with a code of the
 * gateway's list (ErrorCode). There is no request, so there is no request id and no audit row; the
 * connection is closed after the answer.
 */
export function clientErrorAnswer(error: ClientError, requestTimeoutMs: number): { status: number; problem: Problem } {
  const problem = problemOf(clientErrorRefusal(error, requestTimeoutMs));
  return { status: problem.status, problem };
}

function clientErrorRefusal(error: ClientError, requestTimeoutMs: number): AppError {
  let code: ErrorCode;
  let reason: string;
  if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    code = 'REQUEST_TIMEOUT';
    reason = `the request, body included, was not received within ${requestTimeoutMs} ms`;
  } else if (error.code === 'HPE_HEADER_OVERFLOW') {
    code = 'HEADERS_TOO_LARGE';
    reason = `the request line and headers are over ${maxHeaderSize} bytes`;
  } else {
    code = 'HTTP_PARSE_ERROR';
    const known = error.code ? PARSE_REASONS[error.code] : undefined;
    reason = known ?? `not valid HTTP/1.1 (${error.code ?? 'unreadable'})`;
  }
  const field = code === 'HEADERS_TOO_LARGE' ? '(headers)' : '(request)';
  return new AppError(code, reason, { fields: [{ field, reason }] });
}

/** What Node's parser was answered with on each connection it refused (clientErrorHandler), as an AppError. */
const refusedSockets = new WeakMap<object, AppError>();

/**
 * A request whose body stopped coming (the connection ended, was reset or timed out before Content-Length or the
 * last chunk came): Fastify's body reader fails with the socket's ECONNRESET, and the request's audit row is to
 * carry the code its client was answered, by Node's parser (REQUEST_TIMEOUT, HTTP_PARSE_ERROR), which answers
 * first; a connection reset with no answer is a request cut short, as the parser says of one that ends early.
 */
export function requestCutShort(socket: object | undefined): AppError {
  const answered = socket === undefined ? undefined : refusedSockets.get(socket);
  if (answered) return answered;
  const reason = PARSE_REASONS.HPE_INVALID_EOF_STATE;
  return new AppError('HTTP_PARSE_ERROR', reason, { fields: [{ field: '(request)', reason }] });
}

/** Fastify's `clientErrorHandler`: writes the problem and closes the connection (as Fastify's own does). */
export function clientErrorHandler(requestTimeoutMs: number): (error: ClientError, socket: Duplex) => void {
  return (error, socket) => {
    // A reset connection has nobody left to answer.
    if (error.code === 'ECONNRESET' || socket.destroyed) return;
    const { status, problem } = clientErrorAnswer(error, requestTimeoutMs);
    // A request whose body was still coming is audited with this code too (requestCutShort).
    refusedSockets.set(socket, clientErrorRefusal(error, requestTimeoutMs));
    const body = JSON.stringify(problem);
    // No request was read, so no path: the API's headers.
    const security = Object.entries(securityHeaders('/')).map(([name, value]) => `${name}: ${value}\r\n`);
    if (socket.writable) {
      socket.write(
        `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: ${PROBLEM_CONTENT_TYPE}\r\n${security.join('')}` +
          `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
    }
    socket.destroy(error);
  };
}
