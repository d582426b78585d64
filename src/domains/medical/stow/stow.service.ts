import { Injectable } from '@nestjs/common';
import { echoedHeaderValue } from '../../../common/echoed-key';
import { AppError } from '../../../common/errors/app-error';
import { AppConfig } from '../../../config/app-config';
import { acceptedMediaType } from '../accept-header.util';
import { DicomImage } from '../dicom/dicom-parse.util';
import { DicomRejected } from '../dicom/dicom-rejected';
import { attributeName } from '../dicom/dicom-dictionary';
import { MedicalIntakeService } from '../medical-intake.service';
import {
  isMultipartRelated,
  MultipartError,
  MultipartPart,
  parseMultipartRelatedType,
  splitMultipart,
} from './multipart-related.util';
import { DicomJsonDataset } from './native-dicom-model.util';
import {
  FailedInstance,
  failureReasonOf,
  StoredInstance,
  storeResponse,
  storeResponseXml,
  storeRetryAfter,
  storeStatus,
} from './stow-response.util';

/**
 * What a store response is written in, the default first: DICOM JSON, also under application/json, the name
 * earlier editions of PS3.18 gave it, and the Native DICOM Model XML that PACS and older DICOMweb clients ask for.
 */
export const STORE_RESPONSE_TYPES = ['application/dicom+json', 'application/json', 'application/dicom+xml'] as const;
export type StoreResponseType = (typeof STORE_RESPONSE_TYPES)[number];

/** Parts analysed at once: enough to fill the model's batches, few enough to bound decoded pixels in memory. */
const PARALLEL_PARTS = 4;

/** What one request's parts add up to as they are stored or fail. */
interface StowTally {
  stored: StoredInstance[];
  failed: FailedInstance[];
  kept: Array<{ study: string; instance: string; lesions: number }>;
  analysedBy: Map<string, number>;
  /** Set when the database could not keep an instance's findings: the request is answered 503. */
  unavailable?: AppError;
}

export interface StowResult {
  status: number;
  /** Seconds to send a 503's request again after (Retry-After). */
  retryAfterSeconds?: number;
  response: DicomJsonDataset;
  audit: Record<string, unknown>;
}

@Injectable()
export class StowService {
  constructor(
    private readonly intake: MedicalIntakeService,
    private readonly config: AppConfig,
  ) {}

  modelRef(): { name: string; version: string } {
    return this.intake.modelRef();
  }

  /** The HMAC of the parts' own HMACs, in order; the parts are hashed off the event loop (digestAsync). */
  async digest(parts: MultipartPart[]): Promise<string> {
    const each = await Promise.all(parts.map((p) => this.intake.digestAsync(p.body)));
    return this.intake.digest(Buffer.concat(each.map((d) => Buffer.from(d, 'hex'))));
  }

  /** The parts of a STOW body; a body that is not multipart/related of DICOM is a 400/415 for the whole request. */
  split(contentType: string | undefined, body: Buffer): MultipartPart[] {
    // Another media type altogether is 415 (PS3.18 STOW-RS); a multipart/related body that is broken is 400.
    if (!isMultipartRelated(contentType)) throw notMultipartDicom();
    // The boundary and type are parameters of the Content-Type header: a fault there names the header.
    let field = 'Content-Type';
    try {
      const { boundary, type } = parseMultipartRelatedType(contentType);
      if (type && type !== 'application/dicom') {
        throw new AppError(
          'UNSUPPORTED_MEDIA_TYPE',
          `multipart/related type "${type}" is not supported; send type="application/dicom"`,
          {
            fields: [{ field: 'Content-Type', reason: 'type must be application/dicom' }],
          },
        );
      }
      field = 'body';
      const parts = splitMultipart(body, boundary, this.config.MEDICAL_MAX_STOW_INSTANCES);
      if (parts.length === 0) throw new MultipartError('the multipart body has no parts');
      return parts;
    } catch (error) {
      if (error instanceof MultipartError) {
        throw new AppError('VALIDATION_FAILED', error.message, { fields: [{ field, reason: error.message }] });
      }
      throw error;
    }
  }

  /** The store response's media type by the Accept header; a header that accepts none of them is a 406. */
  responseType(accept: string | undefined): StoreResponseType {
    return acceptedMediaType(accept, STORE_RESPONSE_TYPES, 'a store response is written in');
  }

  /** The store response written in the media type responseType chose: the DICOM JSON data set, or its XML. */
  body(response: DicomJsonDataset, type: StoreResponseType): DicomJsonDataset | string {
    return type === 'application/dicom+xml' ? storeResponseXml(response) : response;
  }

  /** Analyses the parts and keeps their findings under the sender's tenant ('' for a token that names none). */
  async store(parts: MultipartPart[], study: string | undefined, tenant: string): Promise<StowResult> {
    const stored: StoredInstance[] = [];
    const failed: FailedInstance[] = [];
    const kept: Array<{ study: string; instance: string; lesions: number }> = [];
    /** SOP Instance UID -> the part that analyses it. Parts are parsed in order (synchronously), so the first copy wins. */
    const analysedBy = new Map<string, number>();
    const tally: StowTally = { stored, failed, kept, analysedBy };
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < parts.length) {
        // A database outage fails the whole request (503, below): the other parts are not analysed for nothing.
        if (tally.unavailable) throw tally.unavailable;
        const index = next++;
        await this.storeOne(parts[index], index + 1, { study, tenant }, tally);
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL_PARTS, parts.length) }, worker));
    failed.sort((a, b) => a.part - b.part);
    const studies = [...new Set(kept.map((k) => k.study))];
    const status = storeStatus(stored.length, failed);
    return {
      status,
      ...(status === 503 ? { retryAfterSeconds: storeRetryAfter(failed) } : {}),
      response: storeResponse(stored, failed),
      audit: {
        parts: parts.length,
        stored: stored.length,
        failed: failed.length,
        failures: failed.map((f) => ({ part: f.part, reason: failureReasonOf(f.rejection) })),
        studies,
        instances: kept,
      },
    };
  }

  private async storeOne(
    part: MultipartPart,
    number: number,
    { study, tenant }: { study: string | undefined; tenant: string },
    tally: StowTally,
  ): Promise<void> {
    const { stored, failed, kept, analysedBy } = tally;
    let image: DicomImage | undefined;
    try {
      const type = (part.headers['content-type'] ?? 'application/dicom').split(';')[0].trim().toLowerCase();
      if (type !== 'application/dicom') {
        throw new DicomRejected(
          'NOT_DICOM',
          `the part's Content-Type is ${echoedPartHeader(type)}, not application/dicom`,
        );
      }
      // DICOMweb parts are binary (PS3.18 8.6.1.2): a base64 or quoted-printable part is not read as DICOM bytes.
      const encoding = part.headers['content-transfer-encoding']?.trim().toLowerCase();
      if (encoding && encoding !== 'binary' && encoding !== '8bit' && encoding !== '7bit') {
        throw new DicomRejected(
          'NOT_DICOM',
          `the part's Content-Transfer-Encoding is ${echoedPartHeader(encoding)}; send the instance's bytes as they are (binary)`,
        );
      }
      image = this.intake.parse(part.body);
      if (study && image.studyInstanceUID !== study) {
        throw new DicomRejected(
          'STUDY_MISMATCH',
          'the instance belongs to another study than the one in the request path',
          attributeName('StudyInstanceUID'),
        );
      }
      // One instance is analysed and stored once per request; a later copy fails rather than running the model again.
      const first = analysedBy.get(image.sopInstanceUID);
      if (first !== undefined) {
        throw new DicomRejected(
          'DUPLICATE_INSTANCE',
          `part ${first} of this request has the same SOP Instance UID; the instance is analysed and stored once`,
          attributeName('SOPInstanceUID'),
        );
      }
      analysedBy.set(image.sopInstanceUID, number);
      const analysis = await this.intake.analyseAndKeep(image, tenant);
      stored.push({ sopClassUID: image.sopClassUID, sopInstanceUID: image.sopInstanceUID });
      const summary = this.intake.auditSummary(analysis.findings);
      kept.push({ study: String(summary.study), instance: String(summary.instance), lesions: Number(summary.lesions) });
    } catch (error) {
      // Findings the database could not keep: the whole request is a 503 with Retry-After, and the PACS
      // sends it again (a re-sent instance replaces its findings); not a per-instance failure it would not retry.
      if (error instanceof AppError && error.code === 'STORAGE_UNAVAILABLE') {
        tally.unavailable ??= error;
        throw error;
      }
      // A runtime refusal (queue full, deadline) fails this instance only: the others keep their answers. It keeps
      // its code, so that a 503's is answered out of resources (0xA700), which a PACS sends again, as over DIMSE.
      const rejection = error instanceof DicomRejected || error instanceof AppError ? error : undefined;
      if (!rejection) throw error;
      failed.push({
        sopClassUID: image?.sopClassUID ?? (rejection instanceof DicomRejected ? rejection.sop?.classUID : undefined),
        sopInstanceUID:
          image?.sopInstanceUID ?? (rejection instanceof DicomRejected ? rejection.sop?.instanceUID : undefined),
        rejection,
        part: number,
      });
    }
  }
}

/** 415: the request is not multipart/related of DICOM instances at all. */
export function notMultipartDicom(): AppError {
  return new AppError('UNSUPPORTED_MEDIA_TYPE', 'the body must be multipart/related; type="application/dicom"', {
    fields: [{ field: 'Content-Type', reason: 'must be multipart/related; type="application/dicom"' }],
  });
}

/** The most characters of a part's header value that its failure reason repeats. */
const ECHOED_PART_HEADER_CHARS = 32;

/**
 * A part's Content-Type or Content-Transfer-Encoding as its failure reason repeats it: cut to its first
 * ECHOED_PART_HEADER_CHARS characters, as a client may send any length, and the reason is kept in the answer and in
 * the audit row of a request none of whose parts was stored; never a card number (named as echoedHeaderValue names
 * one), whole or left by the cut.
 */
function echoedPartHeader(value: string): string {
  return echoedHeaderValue(value, ECHOED_PART_HEADER_CHARS);
}
