import { Injectable } from '@nestjs/common';
import { AuditInputDigester, AuditNote } from '../../common/access';
import { echoedKey } from '../../common/echoed-key';
import { AppError, FieldError, summariseFields } from '../../common/errors/app-error';
import { ReadinessService } from '../../common/health/readiness.service';
import { InferenceEngine, ModelVersionInfo } from '../inference-engine.service';
import { MAX_TIMEOUT_MS } from '../model-registry/model-manifest.schema';
import { canonicalTensorParts, MakeTensor, summariseTensors, Tensor } from '../tensor';
import { invalidTensor, readBinaryTensor, readJsonBytes, splitBinaryBody, tensorBytes } from './oip-binary';
import { decodeOipTensor, fromOipDatatype, oipDataJson, OipDatatype, toOipDatatype } from './oip-codec';
import { OipInferRequest, parseOipInferRequest } from './oip-request.schema';
import type {
  OipInferResponseDto,
  OipOutputTensorDto,
  OipModelListDto,
  OipModelMetadataDto,
  OipReadyDto,
  OipServerMetadataDto,
} from './oip.dto';

const PLATFORM = 'onnxruntime_onnx';
export const SERVER_NAME = 'regulated-inference-gateway';
export const SERVER_VERSION = '0.1.0';

/** Maps the Open Inference Protocol v2 onto the InferenceEngine. */
@Injectable()
export class OipService {
  constructor(
    private readonly engine: InferenceEngine,
    private readonly readiness: ReadinessService,
    private readonly digester: AuditInputDigester,
  ) {}

  serverMetadata(): OipServerMetadataDto {
    return { name: SERVER_NAME, version: SERVER_VERSION, extensions: ['binary_tensor_data'] };
  }

  serverLive(): boolean {
    return this.readiness.failingLiveness().length === 0;
  }

  serverReady(): boolean {
    return this.readiness.evaluate().ready;
  }

  listModels(): OipModelListDto {
    const byName = new Map<string, ModelVersionInfo[]>();
    for (const info of this.engine.listModels()) byName.set(info.name, [...(byName.get(info.name) ?? []), info]);
    return {
      models: [...byName.entries()].map(([name, versions]) => ({
        name,
        versions: versions.map((v) => v.version),
        default_version: versions.find((v) => v.isDefault)!.version,
        domain: versions[0].domain,
        platform: PLATFORM,
      })),
    };
  }

  metadata(name: string, version?: string): OipModelMetadataDto {
    const info = this.engine.describe(name, version);
    const tensor = (t: { name: string; dtype: Tensor['dtype']; shape: number[] }) => ({
      name: t.name,
      datatype: toOipDatatype(t.dtype),
      shape: t.shape,
    });
    return {
      name: info.name,
      versions: this.engine.versionsOf(name),
      platform: PLATFORM,
      inputs: info.manifest.inputs.map(tensor),
      outputs: info.manifest.outputs.map(tensor),
      parameters: {
        version: info.version,
        default: info.isDefault,
        domain: info.domain,
        task: info.manifest.task,
        execution_provider: info.provider,
        ...(info.fallbackReason ? { execution_provider_fallback: info.fallbackReason } : {}),
        max_batch_size: info.batching.batchable ? info.batching.maxBatchSize : 0,
      },
    };
  }

  modelReady(name: string, version?: string): OipReadyDto {
    const info = this.engine.describe(name, version);
    return { name: info.name, ready: info.ready };
  }

  /**
   * Runs an infer request given as JSON, or as a binary-extension body (JSON header + raw tensor
   * bytes, `headerLength` from Inference-Header-Content-Length). Outputs come back as binary when
   * the request asks (`binary_data_output`, or `binary_data` on a requested output).
   */
  async infer(
    name: string,
    version: string | undefined,
    raw: unknown,
    headerLength: string | undefined,
    audit: (note: AuditNote) => void,
  ): Promise<OipAnswer> {
    audit({ model: { name, version } });
    // First, as Triton and KServe answer: a request to a model or version that is not here is a 404, whatever its
    // body; it was checked (a 400 about the body) and decoded into the runtime's buffers before anyone looked.
    const info = this.engine.describe(name, version);
    let value = raw;
    let payload: Buffer | undefined;
    if (Buffer.isBuffer(raw)) {
      // Without the header the body carries no binary data: it is the JSON request, whatever its label
      // (tritonclient.http.aio posts JSON bytes, which aiohttp labels application/octet-stream).
      if (headerLength === undefined) value = parseWholeBodyAsJson(raw);
      else ({ header: value, payload } = splitBinaryBody(raw, headerLength));
    }
    inputCountOfThisModel(value, info);
    const body = parseOipInferRequest(value);
    inputsOfThisModel(body, info);
    // Against the model's metadata before the data is read, as Triton checks: INT32 values sent to an FP32 model were
    // told an element "must be an integer", not that the datatype is not the model's.
    datatypesOfThisModel(body, info);
    shapesOfThisModel(body, info);
    // Given to the engine below (digested first): large tensors go to the worker without a copy.
    const inputs = decodeInputs(body, payload, (dtype, dims) => this.engine.allocate(dtype, dims));
    const timeout = requestTimeoutMs(body.parameters);
    namesThisModel(body, info);
    const known = new Set(info.manifest.outputs.map((o) => o.name));
    const requested = new Set<string>();
    body.outputs?.forEach((output, i) => {
      // A name the caller sent is quoted as any key is (echoedKey): cut past 100 characters, never a card number.
      if (!known.has(output.name)) {
        const reason = `the model has no output "${echoedKey(output.name)}"`;
        throw new AppError('VALIDATION_FAILED', `outputs[${i}].name: ${reason}`, {
          fields: [{ field: `outputs[${i}].name`, reason }],
        });
      }
      // Twice (once as JSON, once as binary) it came back twice under one name: a client keyed by name got either.
      if (requested.has(output.name)) {
        const reason = `"${echoedKey(output.name)}" is requested twice`;
        throw new AppError('VALIDATION_FAILED', `outputs[${i}].name: ${reason}`, {
          fields: [{ field: `outputs[${i}].name`, reason }],
        });
      }
      requested.add(output.name);
      refuseSharedMemory(output.parameters, `outputs[${i}]`);
      // tritonclient's class_count: the answer would be a BYTES tensor of labels, not the model's own output.
      if (output.parameters?.classification !== undefined) {
        const reason = 'the classification extension is not offered (GET /v2 lists the extensions this server has)';
        throw new AppError('VALIDATION_FAILED', `outputs[${i}].parameters.classification: ${reason}`, {
          fields: [{ field: `outputs[${i}].parameters.classification`, reason }],
        });
      }
    });
    // A larger request would run alone as one batch of its size, holding memory (ORT's arena keeps what it
    // took) in proportion to what the caller chose: the max_batch_size the metadata states is the limit.
    if (info.batching.batchable) {
      body.inputs.forEach((input, i) => {
        const rows = input.shape[0];
        if (rows !== undefined && rows > info.batching.maxBatchSize) {
          throw invalidTensor(
            `inputs[${i}].shape[0]`,
            `batch size ${rows} is more than the max_batch_size of ${info.batching.maxBatchSize}`,
          );
        }
      });
    }
    // Digest before the runtime may move the buffers to a worker thread.
    audit({ model: { name, version: info.version }, inputDigest: this.digester.digest(canonicalTensorParts(inputs)) });
    const result = await this.engine.infer(name, info.version, inputs, { timeoutMs: timeout, give: true });
    const allBinary = body.parameters?.binary_data_output === true;
    // No outputs named, `outputs: []` included, is every output (as KServe's and Triton's servers answer it), not none.
    const wanted = body.outputs?.length
      ? body.outputs
      : info.manifest.outputs.map((o) => ({ name: o.name, parameters: undefined }));
    audit({ output: summariseTensors(Object.fromEntries(wanted.map((o) => [o.name, result.outputs[o.name]]))) });
    const chunks: Buffer[] = [];
    // The outputs (by their place in `outputs`) whose values go in the answer's JSON, written from the tensor.
    const asJson = new Map<number, Tensor>();
    const outputs: OipOutputTensorDto[] = wanted.map((o, i) => {
      const tensor = result.outputs[o.name];
      const meta = { name: o.name, shape: tensor.dims, datatype: toOipDatatype(tensor.dtype) };
      // An output's own binary_data wins over the request's binary_data_output (the extension's rule).
      if (!(o.parameters?.binary_data ?? allBinary)) {
        asJson.set(i, representableInJson(o.name, tensor));
        return meta;
      }
      const bytes = tensorBytes(tensor.data);
      chunks.push(bytes);
      return { ...meta, parameters: { binary_data_size: bytes.length } };
    });
    const response: OipInferResponseDto = {
      model_name: result.model,
      model_version: result.version,
      ...(body.id !== undefined ? { id: body.id } : {}),
      parameters: {
        execution_provider: result.provider,
        queue_ms: round(result.queueMs),
        compute_ms: round(result.computeMs),
        batch_size: result.batchSize,
      },
      outputs,
    };
    const json = answerJson(response, asJson);
    if (chunks.length === 0) return { kind: 'json', body: json };
    return { kind: 'binary', headerLength: json.length, body: Buffer.concat([json, ...chunks]) };
  }
}

/** The answer: its JSON as UTF-8 bytes; or, with binary outputs, that JSON (`headerLength` bytes) and their bytes. */
export type OipAnswer = { kind: 'json'; body: Buffer } | { kind: 'binary'; headerLength: number; body: Buffer };

/**
 * `response` as JSON (the member order JSON.stringify gives), UTF-8, each output `json` names with its tensor's
 * values as `data` (written in pieces by oipDataJson, never as one string of the whole).
 */
function answerJson(response: OipInferResponseDto, json: ReadonlyMap<number, Tensor>): Buffer {
  const { outputs, ...head } = response;
  const pieces: Buffer[] = [];
  let text = `${JSON.stringify(head).slice(0, -1)},"outputs":[`;
  outputs.forEach((output, i) => {
    text += i === 0 ? '' : ',';
    const tensor = json.get(i);
    if (!tensor) {
      text += JSON.stringify(output);
      return;
    }
    pieces.push(Buffer.from(`${text}${JSON.stringify(output).slice(0, -1)},"data":`), ...oipDataJson(tensor));
    text = '}';
  });
  pieces.push(Buffer.from(`${text}]}`));
  return Buffer.concat(pieces);
}

function decodeInputs(body: OipInferRequest, payload: Buffer | undefined, make: MakeTensor): Record<string, Tensor> {
  // Input names are the caller's: `toString` or `__proto__` must be a name like any other, not a member found
  // on (or a prototype set through) Object.prototype.
  const inputs: Record<string, Tensor> = Object.create(null) as Record<string, Tensor>;
  let offset = 0;
  body.inputs.forEach((input, i) => {
    const field = `inputs[${i}]`;
    const fail = (suffix: string, reason: string): never => {
      throw new AppError('INVALID_TENSOR', `${field}${suffix}: ${reason}`, {
        fields: [{ field: `${field}${suffix}`, reason }],
      });
    };
    refuseSharedMemory(input.parameters, field);
    const size = input.parameters?.binary_data_size as number | undefined;
    // The extension sends a tensor's values in one place: which of the two to run would be a guess.
    if (size !== undefined && input.data !== undefined) {
      fail(
        '.data',
        'not allowed with parameters.binary_data_size: a tensor is sent either as JSON data or as binary data, not both',
      );
    }
    if (size !== undefined) {
      if (!payload)
        fail('.parameters.binary_data_size', 'binary data needs the Inference-Header-Content-Length header');
      const dtype = fromOipDatatype(input.datatype as OipDatatype);
      inputs[input.name] = readBinaryTensor(payload!, offset, size, dtype, input.shape, field, make);
      offset += size;
    } else if (input.data === undefined) {
      fail('.data', 'required unless parameters.binary_data_size is given');
    } else {
      inputs[input.name] = decodeOipTensor({ ...input, data: input.data }, i, make);
      // The parsed values are the request's body (Fastify holds it until the answer): about 8 bytes of heap per
      // element, 4 MB for an 8-image batch sent as 1 MB of JSON, kept while the request waits for the model. The
      // upload budget counts the 1 MB: 300 such requests queued took a 1 GB heap out of memory. Let go.
      delete input.data;
    }
  });
  if (payload && offset !== payload.length) {
    throw new AppError('INVALID_TENSOR', `body: ${payload.length - offset} bytes follow the last binary input`, {
      fields: [{ field: 'body', reason: 'binary data does not add up to the declared binary_data_size values' }],
    });
  }
  return inputs;
}

/** The shared memory extensions' tensor parameters (tritonclient's set_shared_memory sends the first two, and the third past 0). */
const SHARED_MEMORY_PARAMETERS = ['shared_memory_region', 'shared_memory_byte_size', 'shared_memory_offset'] as const;

/**
 * An input or output placed in shared memory (Triton's system and CUDA shared memory extensions) is refused, naming
 * the parameter: the gateway offers neither extension (GET /v2 lists binary_tensor_data alone), and read as an
 * ordinary tensor an output asked for in a region came back as JSON data while the client read its region, which
 * nothing had written: values the model never gave, with a 200.
 */
function refuseSharedMemory(parameters: Record<string, unknown> | undefined, tensor: string): void {
  const given = SHARED_MEMORY_PARAMETERS.find((name) => parameters?.[name] !== undefined);
  if (given === undefined) return;
  const field = `${tensor}.parameters.${given}`;
  const reason =
    'the shared memory extensions are not offered (GET /v2 lists the extensions this server has); ' +
    'send the tensor as JSON data or as binary data';
  throw new AppError('VALIDATION_FAILED', `${field}: ${reason}`, { fields: [{ field, reason }] });
}

/**
 * A body sent without Inference-Header-Content-Length, read whole as the JSON request. Bytes that are no JSON, or
 * not UTF-8 (most likely binary tensor data sent without the header), are told what the binary extension needs;
 * JSON that nests too deep or gives a member twice is told so, as a JSON body is.
 */
function parseWholeBodyAsJson(raw: Buffer): unknown {
  const notJson = (bad = ''): AppError => {
    const reason = `not a JSON inference request${bad}; a body with binary tensor data needs the Inference-Header-Content-Length header`;
    return new AppError('VALIDATION_FAILED', `body: ${reason}`, { fields: [{ field: 'body', reason }] });
  };
  return readJsonBytes(raw, 'body', notJson, (offset) => notJson(` (byte ${offset} is not UTF-8)`));
}

/**
 * The request's deadline in milliseconds, from `parameters.timeout_ms` or tritonclient's `parameters.timeout`
 * (microseconds, as Triton reads it; it was ignored, so a client's deadline was the model's), the smaller when both
 * are given; undefined when neither is (the model's `timeoutMs`). Microseconds round up to whole milliseconds: a
 * timeout of 500 µs is 1 ms, never none. A `timeout` of 0 is none, as Triton reads it (its default, and what a
 * client that sets none may send): the deadline is then `timeout_ms`'s, else the model's. Either past the longest
 * delay a Node.js timer takes (a longer one fires after 1 ms and drops the request) is refused, naming it.
 */
function requestTimeoutMs(parameters: Record<string, unknown> | undefined): number | undefined {
  const read = (field: 'timeout_ms' | 'timeout', min: number, max: number, reason: string): number | undefined => {
    const value = parameters?.[field];
    if (value === undefined) return undefined;
    if (typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max) return value;
    throw new AppError('VALIDATION_FAILED', `parameters.${field}: ${reason}`, {
      fields: [{ field: `parameters.${field}`, reason }],
    });
  };
  const ms = read(
    'timeout_ms',
    1,
    MAX_TIMEOUT_MS,
    `must be a positive integer of milliseconds, at most ${MAX_TIMEOUT_MS}`,
  );
  const maxUs = MAX_TIMEOUT_MS * 1000;
  const us = read(
    'timeout',
    0,
    maxUs,
    `must be 0 (no timeout) or a positive integer of microseconds, at most ${maxUs}`,
  );
  const fromUs = us === undefined || us === 0 ? undefined : Math.ceil(us / 1000);
  if (ms === undefined) return fromUs;
  return fromUs === undefined ? ms : Math.min(ms, fromUs);
}

/**
 * `model_name` and `model_version` in the body (KServe's client sends them) must name what the path runs:
 * a body written for one model and sent to another is refused rather than run on a model it did not name. An empty
 * `model_version` names none: the protocol's gRPC form (proto3) cannot tell "" from a version not given, which
 * it defines as the server's choice, so a body translated from it (KServe's InferRequest.from_grpc) carries "".
 */
function namesThisModel(body: OipInferRequest, info: ModelVersionInfo): void {
  const differs = (field: 'model_name' | 'model_version', runs: string): void => {
    const named = body[field];
    if (named === undefined || named === runs || (field === 'model_version' && named === '')) return;
    const reason = `names "${echoedKey(named)}", but this request runs ${field === 'model_name' ? 'model' : 'version'} "${runs}"`;
    throw new AppError('VALIDATION_FAILED', `${field}: ${reason}`, { fields: [{ field, reason }] });
  };
  differs('model_name', info.name);
  differs('model_version', info.version);
}

/**
 * A request of more inputs than the model's metadata declares is refused by their count, naming `inputs`, before any
 * one of them is read (each such request gives one the model does not have, or one twice): 40,000 tiny inputs of
 * names the model does not have were each checked by the schema, decoded and named before the 400.
 */
function inputCountOfThisModel(value: unknown, info: ModelVersionInfo): void {
  const inputs = (value as { inputs?: unknown } | null | undefined)?.inputs;
  const declared = info.manifest.inputs;
  if (!Array.isArray(inputs) || inputs.length <= declared.length) return;
  const names = declared.map((spec) => `"${spec.name}"`).join(', ');
  const takes = `${declared.length} input${declared.length === 1 ? '' : 's'} (${names})`;
  throw invalidTensor('inputs', `the model takes ${takes}, got ${inputs.length}`);
}

/**
 * Each input must be one the model's metadata declares, given once, and each input it declares must be given: one it
 * does not have, or given again, is refused naming its place (`inputs[i].name`), as the other input errors are, one
 * missing naming `inputs`. The engine's refusal named `inputs.z` and `inputs.x`, paths an OIP request (its inputs
 * are an array) does not have.
 */
function inputsOfThisModel(body: OipInferRequest, info: ModelVersionInfo): void {
  const declared = new Set(info.manifest.inputs.map((spec) => spec.name));
  const fields: FieldError[] = [];
  const given = new Set<string>();
  body.inputs.forEach((input, i) => {
    // The caller's name, quoted as any key a caller sent is: cut past 100 characters, never a card number.
    if (!declared.has(input.name)) {
      fields.push({ field: `inputs[${i}].name`, reason: `the model has no input named "${echoedKey(input.name)}"` });
    } else if (given.has(input.name)) {
      fields.push({ field: `inputs[${i}].name`, reason: `"${echoedKey(input.name)}" is given twice` });
    }
    given.add(input.name);
  });
  for (const spec of info.manifest.inputs) {
    if (!given.has(spec.name)) fields.push({ field: 'inputs', reason: `must contain an input named "${spec.name}"` });
  }
  if (fields.length > 0) throw new AppError('INVALID_TENSOR', summariseFields(fields), { fields });
}

/**
 * An input's datatype must be the one the model's metadata states, and is refused in the protocol's words, naming
 * `inputs[i].datatype`: the engine's refusal said `inputs.x: dtype must be float32, got int32`, names an OIP client
 * never sends nor reads (GET /v2/models/{name} says FP32).
 */
function datatypesOfThisModel(body: OipInferRequest, info: ModelVersionInfo): void {
  body.inputs.forEach((input, i) => {
    const spec = info.manifest.inputs.find((declared) => declared.name === input.name);
    if (!spec || input.datatype === toOipDatatype(spec.dtype)) return;
    const field = `inputs[${i}].datatype`;
    const reason = `the model's input "${input.name}" takes ${toOipDatatype(spec.dtype)}, got ${input.datatype}`;
    throw new AppError('INVALID_TENSOR', `${field}: ${reason}`, { fields: [{ field, reason }] });
  });
}

/**
 * An input's shape must have the rank and the fixed dimensions the model's metadata states, refused naming the
 * request's own field (`inputs[i].shape`, `inputs[i].shape[d]`): the engine's refusal named `inputs.x`, a path no
 * OIP request has (its inputs are an array).
 */
function shapesOfThisModel(body: OipInferRequest, info: ModelVersionInfo): void {
  body.inputs.forEach((input, i) => {
    const spec = info.manifest.inputs.find((declared) => declared.name === input.name);
    if (!spec) return;
    const fail = (field: string, reason: string): never => {
      throw new AppError('INVALID_TENSOR', `${field}: ${reason}`, { fields: [{ field, reason }] });
    };
    const field = `inputs[${i}].shape`;
    const of = `the model's input "${input.name}"`;
    if (input.shape.length !== spec.shape.length) {
      fail(
        field,
        `${of} has ${spec.shape.length} dimensions [${spec.shape.join(', ')}], got [${input.shape.join(', ')}]`,
      );
    }
    spec.shape.forEach((dim, d) => {
      const got = input.shape[d];
      if (got < 1) fail(`${field}[${d}]`, 'must be a positive integer');
      if (dim >= 0 && got !== dim) fail(`${field}[${d}]`, `${of} takes ${dim}, got ${got}`);
    });
  });
}

/**
 * JSON has no NaN or Infinity: JSON.stringify would send `null`, which a typed client reads as 0 (a fraud
 * probability of 0). Such an output is refused, naming the output; as binary data it travels as it is.
 * An INT64 past 2^53 would be rounded to the nearest double (a client would read a number the model never
 * gave): refused the same way, as the same values are refused as inputs.
 */
function representableInJson(name: string, tensor: Tensor): Tensor {
  const refuse = (code: 'OUTPUT_NOT_FINITE' | 'OUTPUT_NOT_REPRESENTABLE', reason: string): never => {
    throw new AppError(code, `outputs.${name}: ${reason}`, { fields: [{ field: `outputs.${name}`, reason }] });
  };
  if (tensor.dtype === 'int64') {
    const values = tensor.data as BigInt64Array;
    const [min, max] = [BigInt(Number.MIN_SAFE_INTEGER), BigInt(Number.MAX_SAFE_INTEGER)];
    for (let i = 0; i < values.length; i++) {
      if (values[i] >= min && values[i] <= max) continue;
      refuse(
        'OUTPUT_NOT_REPRESENTABLE',
        `element ${i} is ${values[i]}, outside the integers a JSON number carries exactly ` +
          `([${Number.MIN_SAFE_INTEGER}, ${Number.MAX_SAFE_INTEGER}]); ask for the output as binary data ` +
          '(binary_data_output) to get it exactly',
      );
    }
    return tensor;
  }
  if (tensor.dtype !== 'float32' && tensor.dtype !== 'float64') return tensor;
  const values = tensor.data as Float32Array | Float64Array;
  for (let i = 0; i < values.length; i++) {
    if (Number.isFinite(values[i])) continue;
    refuse(
      'OUTPUT_NOT_FINITE',
      `element ${i} is ${values[i]}, which JSON cannot carry: the inputs are most likely outside the range the model ` +
        'was trained on (ask for the output as binary data, binary_data_output, to see it as it is)',
    );
  }
  return tensor;
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
