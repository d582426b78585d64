import { isUtf8 } from 'node:buffer';
import type { FastifyInstance } from 'fastify';
import { AppError, malformedJson } from '../../common/errors/app-error';
import { unreadMediaType } from '../../common/errors/problem.filter';
import { charsetRefusal, firstInvalidUtf8, notUtf8At, notUtf8Error } from '../../common/http/json-charset';
import { jsonShape, MAX_JSON_DEPTH, tooDeepError } from '../../common/http/json-depth';
import { duplicateMemberError } from '../../common/http/json-duplicate-keys';
import { parseJsonInPieces } from '../../common/http/json-in-pieces';
import { keepBodyDigits, noteLostDigits } from '../../common/http/json-lost-digits';
import { BeginJsonDigest, digestsBodyEarly, keepRawJson } from '../../common/http/raw-json';
import type { TensorDtype } from '../model-registry/model-manifest.schema';
import { elementCount, MakeTensor, Tensor, TensorData, TYPED_ARRAYS, zeros } from '../tensor';

/**
 * The binary tensor data extension of the Open Inference Protocol (as Triton's HTTP clients send it by
 * default): the body is a JSON header of `Inference-Header-Content-Length` bytes followed by the raw
 * little-endian bytes of each input that declares `parameters.binary_data_size`, in order.
 */
export const HEADER_LENGTH = 'inference-header-content-length';

/** `beginDigest`: how a route that asks for it (DIGEST_JSON_BODY) has its large body's digest begun before the parse. */
export function registerOipBinaryBodies(fastify: FastifyInstance, beginDigest?: BeginJsonDigest): void {
  // Triton's Python HTTP client (geventhttpclient) sends its infer body, JSON or with binary tensors, without
  // a Content-Type, which Fastify answers 415. An Open Inference Protocol body is JSON whatever it is labelled
  // (its binary form starts with a JSON header), as Triton and KServe read it: an unlabelled one is read so.
  fastify.addHook('onRequest', (request, _reply, done) => {
    if (request.headers['content-type'] === undefined && request.routeOptions.url?.startsWith('/v2/')) {
      request.headers['content-type'] = 'application/json';
    }
    done();
  });
  const json = fastify.getDefaultJsonParser('error', 'error');
  void fastify.removeContentTypeParser('application/json');
  fastify.addContentTypeParser('application/json', { parseAs: 'buffer' }, (request, body, done) => {
    // JSON is UTF-8 (RFC 8259 8.1): a body labelled with another charset is a 415, bytes that are not UTF-8 a 400.
    const charset = charsetRefusal(request.headers['content-type']);
    if (charset) return done(charset);
    // Only the Open Inference Protocol's infer routes read the binary extension; elsewhere the header
    // means nothing and the body is JSON like any other.
    if (request.headers[HEADER_LENGTH] !== undefined && request.routeOptions.url?.startsWith('/v2/')) {
      return done(null, body);
    }
    const bytes = body as Buffer;
    const notUtf8 = notUtf8Error(bytes);
    if (notUtf8) return done(notUtf8);
    let parsedBody: unknown;
    // Nobody waits for it if the body is refused below; the digest thread's answer is then dropped.
    const digest =
      beginDigest && digestsBodyEarly(request.routeOptions.config, bytes)
        ? beginDigest(bytes, () => parsedBody)
        : undefined;
    const accept = (parsed: unknown): void => {
      // Every JSON body of every route passes here: none nested deep enough to overflow a walker.
      const refused = shapeRefusal(bytes, parsed);
      if (refused) return done(refused);
      parsedBody = parsed;
      if (typeof parsed === 'number') keepBodyDigits(request, bytes.toString('utf8'), parsed);
      keepRawJson(parsed, bytes, digest);
      done(null, parsed);
    };
    // A large body of one long array (a fraud batch) is parsed without one string of the whole; else as Fastify does.
    const inPieces = parseJsonInPieces(bytes);
    if (inPieces !== undefined) return accept(inPieces);
    const text = bytes.toString('utf8');
    void json(request, text, (error, parsed) => {
      if (error) return done(jsonRefusal(error, text));
      accept(parsed);
    });
  });
  // Only the Open Inference Protocol's infer routes read raw bytes. Elsewhere the body went on as a Buffer, which a
  // JSON route took for an object with a member per byte: each named as not accepted (a million for a megabyte), and
  // the route's own fields as required. It is the 415 any other type this route does not read gets.
  fastify.addContentTypeParser('application/octet-stream', { parseAs: 'buffer' }, (request, body, done) =>
    request.routeOptions.url?.startsWith('/v2/')
      ? done(null, body)
      : done(unreadMediaType(request.headers['content-type'])),
  );
}

/**
 * The refusal of a JSON body Fastify's parser would not read, as the gateway's MALFORMED_JSON: an empty one in
 * Fastify's words, one that is no JSON saying where it breaks, or that it carries a prototype key (Fastify's
 * own says neither). Worked out only for a body already refused; never quotes the body, which may hold a card
 * number or a patient's name.
 */
function jsonRefusal(error: Error, text: string): Error {
  const code = (error as { code?: unknown }).code;
  if (code === 'FST_ERR_CTP_EMPTY_JSON_BODY') return malformedJson(error.message);
  if (code !== 'FST_ERR_CTP_INVALID_JSON_BODY') return error;
  let detail = 'Body carries a key named __proto__, or constructor holding prototype, which is not accepted';
  try {
    JSON.parse(text);
  } catch (thrown) {
    const message = thrown instanceof Error ? thrown.message : '';
    const position = /at position (\d+)/.exec(message)?.[1];
    detail = message.startsWith('Unexpected end of JSON input')
      ? 'Body is not valid JSON: it ends before the JSON is complete'
      : position !== undefined
        ? `Body is not valid JSON: it breaks at character ${position}`
        : 'Body is not valid JSON';
  }
  return malformedJson(detail);
}

/** 400 INVALID_TENSOR naming the field of the request that is wrong, and why. */
export function invalidTensor(field: string, reason: string): AppError {
  return new AppError('INVALID_TENSOR', `${field}: ${reason}`, { fields: [{ field, reason }] });
}

/**
 * Splits a binary-extension body into its JSON header and the bytes after it. The header's length is read only as
 * decimal digits, as Content-Length is (RFC 9110 8.6): Number() took `1e2` for 100, `0x10` for 16 and an empty
 * value for 0, so a header another reader in front of the gateway parses otherwise was split where it guessed.
 */
export function splitBinaryBody(body: Buffer, headerLength: string): { header: unknown; payload: Buffer } {
  const length = /^[0-9]{1,15}$/.test(headerLength.trim()) ? Number(headerLength.trim()) : NaN;
  if (!Number.isInteger(length) || length < 0 || length > body.length) {
    throw invalidTensor(
      'Inference-Header-Content-Length',
      `must be an integer between 0 and the body size (${body.length})`,
    );
  }
  const header = readJsonBytes(body.subarray(0, length), '(inference header)', () =>
    invalidTensor('Inference-Header-Content-Length', 'the first bytes of the body are not a JSON inference header'),
  );
  return { header, payload: body.subarray(length) };
}

/**
 * JSON bytes read as the HTTP JSON parser reads a body: refused, naming `field`, when they are not UTF-8 or nest
 * too deep, and naming the member when one is given twice; `notJson` is the refusal of bytes that are no JSON, and
 * `notUtf8` of bytes that are not UTF-8 (with the offset of the first bad one).
 */
export function readJsonBytes(
  bytes: Buffer,
  field: string,
  notJson: () => AppError,
  notUtf8 = (offset: number): AppError => notUtf8At(offset, field),
): unknown {
  if (!isUtf8(bytes)) throw notUtf8(firstInvalidUtf8(bytes));
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw notJson();
  }
  const refused = shapeRefusal(bytes, value, field);
  if (refused) throw refused;
  return value;
}

/**
 * Why parsed JSON is refused for its shape, as every JSON body is: nested deeper than MAX_JSON_DEPTH (naming
 * `field`), or an object giving a member twice; undefined when neither. One walk counts both: the depth, and the keys
 * for the duplicate member check; and finds a number past 2^53, whose digits as sent are then kept for the card
 * number scan (noteLostDigits: a 19-digit card number sent as a number was read with other digits).
 */
function shapeRefusal(bytes: Buffer, parsed: unknown, field = '(body)'): AppError | undefined {
  const shape = jsonShape(parsed, MAX_JSON_DEPTH);
  if (shape.tooDeep) return tooDeepError(field);
  const duplicate = duplicateMemberError(bytes, parsed, () => bytes.toString('utf8'), shape.keys);
  if (duplicate) return duplicate;
  if (shape.unsafeNumbers) noteLostDigits(bytes.toString('utf8'), parsed);
  return undefined;
}

/** Reads `size` bytes at `offset` as a tensor (copied into an aligned buffer of its own, from `make`). */
export function readBinaryTensor(
  payload: Buffer,
  offset: number,
  size: number,
  dtype: TensorDtype,
  dims: number[],
  field: string,
  make: MakeTensor = zeros,
): Tensor {
  const count = elementCount(dims);
  const bytes = count * TYPED_ARRAYS[dtype].BYTES_PER_ELEMENT;
  if (size !== bytes) {
    throw invalidTensor(
      `${field}.parameters.binary_data_size`,
      `shape [${dims.join(', ')}] needs ${bytes} bytes, got ${size}`,
    );
  }
  if (offset + size > payload.length)
    throw invalidTensor(`${field}.parameters.binary_data_size`, 'runs past the end of the body');
  const { data } = make(dtype, dims);
  new Uint8Array(data.buffer, data.byteOffset, data.byteLength).set(payload.subarray(offset, offset + size));
  if (dtype === 'bool') {
    // Other bytes are no bool at all: what ORT makes of them is undefined (Not gave true for both 0x02 and 0xFF).
    for (let i = 0; i < data.length; i++) {
      if (data[i] !== 0 && data[i] !== 1) {
        throw invalidTensor(`${field}.data`, `element ${i} is byte ${data[i]}; a BOOL byte must be 0 or 1`);
      }
    }
  } else if (dtype === 'float32' || dtype === 'float64') {
    const values = data as Float32Array;
    for (let i = 0; i < values.length; i++) {
      if (!Number.isFinite(values[i])) throw invalidTensor(`${field}.data`, `element ${i} must be a finite number`);
    }
  }
  return { dtype, dims, data };
}

export function tensorBytes(data: TensorData): Buffer {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}
