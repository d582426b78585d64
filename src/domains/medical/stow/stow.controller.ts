import { applyDecorators, Controller, HttpCode, Param, Post, Req, Res, VERSION_NEUTRAL } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiConsumes, ApiResponse, ApiTags, getSchemaPath } from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { noteAudit, principalOf, RequirePermission, withInputDigest } from '../../../common/access';
import { ApiProblems, PROTECTED_ROUTE_ERRORS } from '../../../common/errors/api-error-responses';
import { ProblemDto } from '../../../common/errors/problem.dto';
import { PROBLEM_CONTENT_TYPE } from '../../../common/errors/problem';
import { BODY_MEDIA_TYPE, BodyMediaTypeRule } from '../../../common/http/body-media-type';
import { AddRouteConfig } from '../../../common/http/route-config';
import { varyOn } from '../../../common/http/vary';
import { checkStudyUidParam } from '../dicom/dicom-uid.util';
import { isMultipartRelated } from './multipart-related.util';
import { notMultipartDicom, STORE_RESPONSE_TYPES, StowService } from './stow.service';

/**
 * Another media type altogether is refused before the body is read (a DICOM file sent as JSON went to the JSON
 * parser); multipart/related of another type is read, then refused by StowService.split.
 */
const STOW_BODY: BodyMediaTypeRule = { accepts: isMultipartRelated, refusal: notMultipartDicom, vary: 'Accept' };

/** An attribute of a DICOM JSON dataset (PS3.18 F.2.2): its VR, and its values (items of a sequence are datasets). */
const DICOM_JSON_ATTRIBUTE = {
  type: 'object',
  required: ['vr'],
  properties: { vr: { type: 'string', pattern: '^[A-Z]{2}$' }, Value: { type: 'array', items: {} } },
};

/** The store response (PS3.18 10.5.3), a DICOM JSON dataset keyed by tag. */
const STORE_RESPONSE_SCHEMA = {
  type: 'object',
  description:
    'DICOM JSON: ReferencedSOPSequence (0008,1199) of the stored instances, FailedSOPSequence (0008,1198) of the others ' +
    'with their FailureReason and, in the private element (0009,1001), the reason in words; RetrieveURL (0008,1190), ' +
    'in the response and in each stored item, is empty: the gateway keeps findings (GET ' +
    '/v1/medical/studies/{StudyInstanceUID}/findings), not instances to retrieve by WADO-RS',
  additionalProperties: DICOM_JSON_ATTRIBUTE,
};

/** The same store response as a Native DICOM Model document (PS3.19 A.1), for `Accept: application/dicom+xml`. */
const STORE_RESPONSE_XML_SCHEMA = {
  type: 'string',
  description:
    'Native DICOM Model XML (PS3.19 A.1): the same attributes as the DICOM JSON answer, as DicomAttribute elements ' +
    '(tag, vr, keyword; the private (0009,1001) as tag 00090001 with privateCreator) under NativeDicomModel',
};

/** The store response, in each of its media types. */
const STORE_RESPONSE_CONTENT = Object.fromEntries(
  STORE_RESPONSE_TYPES.map((type) => [
    type,
    { schema: type === 'application/dicom+xml' ? STORE_RESPONSE_XML_SCHEMA : STORE_RESPONSE_SCHEMA },
  ]),
);

/**
 * 200 all stored, 202 some failed, 409 none stored: each answers the store response, in any of its media types. A
 * 503 is a problem, as on every route, or the store response when each instance failed out of resources (0xA700).
 */
const ApiStoreResponses = (): MethodDecorator =>
  applyDecorators(
    ...[
      [200, 'Every instance stored (analysed)'],
      [202, 'Some instances stored, the others failed (FailedSOPSequence says why)'],
      [409, 'No instance stored (FailedSOPSequence says why)'],
    ].map(([status, description]) =>
      ApiResponse({ status: Number(status), description: String(description), content: STORE_RESPONSE_CONTENT }),
    ),
    ApiResponse({
      status: 503,
      description:
        'Temporarily unable (audit trail or database unavailable, too many uploads, shutting down): a problem; or no ' +
        'instance stored, each only because the model could not run it for now (queue full, model not ready): the ' +
        'store response, each failed 0xA700. Send the request again after Retry-After seconds',
      content: { [PROBLEM_CONTENT_TYPE]: { schema: { $ref: getSchemaPath(ProblemDto) } }, ...STORE_RESPONSE_CONTENT },
      headers: { 'Retry-After': { description: 'Seconds to wait before retrying', schema: { type: 'integer' } } },
    }),
  );

/** DICOMweb STOW-RS (PS3.18 10.5): a PACS or modality stores instances; the gateway analyses them and keeps the findings. */
@ApiTags('medical')
@ApiBearerAuth()
@ApiProblems(...PROTECTED_ROUTE_ERRORS, 400, 406, 413, 415)
@Controller({ path: 'dicomweb/studies', version: VERSION_NEUTRAL })
export class StowController {
  constructor(private readonly stow: StowService) {}

  /** Stores (analyses) the instances of one or more studies. */
  @Post()
  @HttpCode(200)
  @RequirePermission('medical:infer', 'medical.stow')
  @AddRouteConfig({ [BODY_MEDIA_TYPE]: STOW_BODY })
  @ApiConsumes('multipart/related')
  @ApiBody({
    description: 'multipart/related; type="application/dicom": one DICOM Part 10 instance per part',
    schema: { type: 'string', format: 'binary' },
  })
  @ApiStoreResponses()
  async store(@Req() request: FastifyRequest, @Res({ passthrough: true }) reply: FastifyReply): Promise<unknown> {
    return this.handle(request, reply, undefined);
  }

  /** Stores (analyses) instances that must all belong to this study. */
  @Post(':studyInstanceUID')
  @HttpCode(200)
  @RequirePermission('medical:infer', 'medical.stow')
  @AddRouteConfig({ [BODY_MEDIA_TYPE]: STOW_BODY })
  @ApiConsumes('multipart/related')
  @ApiBody({
    description: 'multipart/related; type="application/dicom": one DICOM Part 10 instance per part',
    schema: { type: 'string', format: 'binary' },
  })
  @ApiStoreResponses()
  async storeInStudy(
    @Param('studyInstanceUID') studyInstanceUID: string,
    @Req() request: FastifyRequest,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<unknown> {
    // Every answer varies on Accept, a refused UID's too (handle says so again for both routes).
    varyOn(reply, 'Accept');
    checkStudyUidParam(studyInstanceUID);
    return this.handle(request, reply, studyInstanceUID);
  }

  private async handle(request: FastifyRequest, reply: FastifyReply, study: string | undefined): Promise<unknown> {
    // DICOM JSON or XML by Accept, and a 406 when it takes neither: every answer from here on says so to caches.
    varyOn(reply, 'Accept');
    const body = request.body;
    if (!Buffer.isBuffer(body)) throw notMultipartDicom();
    const parts = this.stow.split(request.headers['content-type'], body);
    noteAudit(request, { model: this.stow.modelRef() });
    // Hashed on the thread pool while the instances are parsed and run.
    return withInputDigest(request, this.stow.digest(parts), async () => {
      // Decided before any instance is analysed: a 406 runs nothing and stores nothing.
      const type = this.stow.responseType(request.headers.accept);
      const result = await this.stow.store(parts, study, principalOf(request)?.tenant ?? '');
      noteAudit(request, { output: result.audit });
      void reply.code(result.status).header('content-type', type);
      if (result.retryAfterSeconds !== undefined) void reply.header('retry-after', String(result.retryAfterSeconds));
      return this.stow.body(result.response, type);
    });
  }
}
