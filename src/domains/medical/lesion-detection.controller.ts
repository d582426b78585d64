import { Controller, Get, HttpCode, Param, Post, Query, Req, Res } from '@nestjs/common';
import {
  ApiBearerAuth,
  ApiBody,
  ApiConsumes,
  ApiExtraModels,
  ApiOkResponse,
  ApiParam,
  ApiTags,
  getSchemaPath,
} from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { noteAudit, principalOf, RequirePermission, withInputDigest } from '../../common/access';
import { AppError } from '../../common/errors/app-error';
import { ApiProblems, PROTECTED_ROUTE_ERRORS } from '../../common/errors/api-error-responses';
import { BODY_MEDIA_TYPE } from '../../common/http/body-media-type';
import { NoQueryDto } from '../../common/http/no-query';
import { AddRouteConfig } from '../../common/http/route-config';
import { varyOn } from '../../common/http/vary';
import { acceptedMediaType } from './accept-header.util';
import { dicomProblem } from './dicom/dicom-problem';
import { checkStudyUidParam, DICOM_UID_PATTERN } from './dicom/dicom-uid.util';
import { DicomRejected } from './dicom/dicom-rejected';
import { LesionDetectionDto, StudyFindingsDto } from './lesion-detection.dto';
import { MedicalIntakeService } from './medical-intake.service';
import { answerContentType, answerForm } from './sr/sr-negotiation.util';

const DICOM = 'application/dicom';
/** What a study's kept findings are answered as: JSON only. */
const FINDINGS_TYPES = ['application/json'] as const;

function isDicomInstance(contentType: string | undefined): boolean {
  return /^application\/dicom\s*(;|$)/i.test(contentType ?? '');
}

/** 415: another media type (JSON, multipart, ...), as for STOW-RS and a type no route reads; not a 400. */
function notDicomInstance(): AppError {
  return new AppError(
    'UNSUPPORTED_MEDIA_TYPE',
    'the body must be one DICOM Part 10 instance sent as application/dicom',
    {
      fields: [{ field: 'Content-Type', reason: 'must be application/dicom' }],
    },
  );
}

/** One instance in, its findings out (JSON, or a DICOM SR on `Accept: application/dicom`). */
@ApiTags('medical')
@ApiBearerAuth()
@ApiProblems(...PROTECTED_ROUTE_ERRORS)
@Controller('medical')
export class LesionDetectionController {
  constructor(private readonly intake: MedicalIntakeService) {}

  /** Detects lesions in one DICOM image instance (the body is the Part 10 file). */
  @Post('lesion-detections')
  @HttpCode(200)
  @RequirePermission('medical:infer', 'medical.lesion-detection')
  @AddRouteConfig({ [BODY_MEDIA_TYPE]: { accepts: isDicomInstance, refusal: notDicomInstance, vary: 'Accept' } })
  @ApiConsumes(DICOM)
  @ApiBody({ description: 'One DICOM Part 10 instance', schema: { type: 'string', format: 'binary' } })
  @ApiExtraModels(LesionDetectionDto)
  @ApiOkResponse({
    description:
      'JSON findings, or a Comprehensive SR (TID 1500) when Accept is application/dicom, in the transfer syntax its ' +
      'transfer-syntax parameter names: 1.2.840.10008.1.2.1 (the default, also for *), 1.2.840.10008.1.2 or ' +
      '1.2.840.10008.1.2.1.99 (deflated); any other is a 406',
    content: {
      'application/json': { schema: { $ref: getSchemaPath(LesionDetectionDto) } },
      // The SR is a DICOM Part 10 file, not the JSON findings.
      [DICOM]: { schema: { type: 'string', format: 'binary' } },
    },
  })
  @ApiProblems(400, 406, 413, 415, 422, 504)
  async detect(
    @Req() request: FastifyRequest,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<LesionDetectionDto | Buffer> {
    // JSON or an SR by Accept: every answer from here on, a refusal included, says so to caches.
    varyOn(reply, 'Accept');
    const body = request.body;
    // Another media type (JSON, multipart, ...) was refused before the body was read (BODY_MEDIA_TYPE); a request
    // without a body comes here.
    if (!Buffer.isBuffer(body) || !isDicomInstance(request.headers['content-type'])) throw notDicomInstance();
    noteAudit(request, { model: this.intake.modelRef() });
    // Hashed on the thread pool while the image is parsed and run: at one request at a time this
    // hashing (about 1 ms for a 900 KB ultrasound frame) is no longer in the answer's time.
    return withInputDigest(request, this.intake.digestAsync(body), async () => {
      // Read from the request, not by @Headers: that would document Accept as a required header parameter,
      // which OpenAPI 3 ignores; the 200's two media types say what Accept chooses. Decided before the
      // instance is read: a 406 (a transfer syntax the SR is not written in) analyses nothing.
      const answer = answerForm(request.headers.accept);
      try {
        // Answered, not kept: the caller has the findings; STOW and DIMSE keep theirs for a later GET.
        const analysis = await this.intake.analyse(this.intake.parse(body));
        noteAudit(request, { output: this.intake.auditSummary(analysis.findings) });
        if (answer.form === 'sr') {
          void reply.header('content-type', answerContentType(answer));
          return this.intake.structuredReport(analysis, answer.transferSyntax);
        }
        return { ...analysis.findings, requestId: String(request.id) };
      } catch (error) {
        if (error instanceof DicomRejected) {
          noteAudit(request, { reason: error.reason });
          throw dicomProblem(error);
        }
        throw error;
      }
    });
  }

  /** Findings kept for a study (sent by STOW-RS or DIMSE). */
  @Get('studies/:studyInstanceUID/findings')
  @ApiParam({
    name: 'studyInstanceUID',
    description: "The study's Study Instance UID (0020,000D): a DICOM UID (PS3.5 9.1)",
    schema: { type: 'string', pattern: DICOM_UID_PATTERN.source, maxLength: 64 },
  })
  @RequirePermission('medical:infer', 'medical.findings-read')
  @ApiOkResponse({
    type: StudyFindingsDto,
    description:
      'The findings as JSON, the one form they are answered in: an Accept header that takes no JSON is a 406',
  })
  @ApiProblems(400, 404, 406)
  async studyFindings(
    @Param('studyInstanceUID') studyInstanceUID: string,
    @Query() _query: NoQueryDto,
    @Req() request: FastifyRequest,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<StudyFindingsDto> {
    // JSON or a 406 by Accept: every answer says so to caches, as the other medical routes' do.
    varyOn(reply, 'Accept');
    checkStudyUidParam(studyInstanceUID);
    noteAudit(request, { inputDigest: this.intake.digest(Buffer.from(studyInstanceUID)) });
    // Decided before the findings are read. DICOM JSON (application/dicom+json) is not offered: the findings are
    // the gateway's own JSON, not a DICOM data set, and the SR is written per instance, not per study.
    acceptedMediaType(request.headers.accept, FINDINGS_TYPES, "a study's findings are answered in");
    const findings = await this.intake.studyFindings(studyInstanceUID, principalOf(request)?.tenant);
    noteAudit(request, {
      output: { study: this.intake.protector.pseudonymUid(studyInstanceUID), instances: findings.instances.length },
    });
    return findings;
  }
}
