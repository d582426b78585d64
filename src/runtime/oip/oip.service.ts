import { Injectable } from '@nestjs/common';
import { AppError } from '../../common/errors/app-error';
import { ReadinessService } from '../../common/health/readiness.service';
import { InferenceEngine, ModelVersionInfo } from '../inference-engine.service';
import { Tensor } from '../tensor';
import { decodeOipTensor, encodeOipTensor, toOipDatatype } from './oip-codec';
import type {
  OipInferRequestDto,
  OipInferResponseDto,
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
  ) {}

  serverMetadata(): OipServerMetadataDto {
    return { name: SERVER_NAME, version: SERVER_VERSION, extensions: [] };
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
        default_version: info.isDefault,
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

  async infer(name: string, version: string | undefined, body: OipInferRequestDto): Promise<OipInferResponseDto> {
    const inputs: Record<string, Tensor> = {};
    body.inputs.forEach((input, i) => {
      if (inputs[input.name]) {
        throw new AppError('INVALID_TENSOR', `inputs[${i}].name: "${input.name}" is given twice`, {
          fields: [{ field: `inputs[${i}].name`, reason: 'duplicate input name' }],
        });
      }
      inputs[input.name] = decodeOipTensor(input, i);
    });
    const timeout = body.parameters?.timeout_ms;
    if (timeout !== undefined && (typeof timeout !== 'number' || !Number.isInteger(timeout) || timeout < 1)) {
      throw new AppError('VALIDATION_FAILED', 'parameters.timeout_ms must be a positive integer', {
        fields: [{ field: 'parameters.timeout_ms', reason: 'must be a positive integer (milliseconds)' }],
      });
    }
    const info = this.engine.describe(name, version);
    const requested = body.outputs?.map((o) => o.name);
    const known = new Set(info.manifest.outputs.map((o) => o.name));
    requested?.forEach((output, i) => {
      if (!known.has(output)) {
        throw new AppError('VALIDATION_FAILED', `outputs[${i}].name: the model has no output "${output}"`, {
          fields: [{ field: `outputs[${i}].name`, reason: `unknown output "${output}"` }],
        });
      }
    });
    const result = await this.engine.infer(name, info.version, inputs, { timeoutMs: timeout });
    const names = requested ?? info.manifest.outputs.map((o) => o.name);
    return {
      model_name: result.model,
      model_version: result.version,
      ...(body.id !== undefined ? { id: body.id } : {}),
      parameters: {
        execution_provider: result.provider,
        queue_ms: round(result.queueMs),
        compute_ms: round(result.computeMs),
        batch_size: result.batchSize,
      },
      outputs: names.map((n) => encodeOipTensor(n, result.outputs[n])),
    };
  }
}

function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
