import { Body, Controller, HttpCode, Post, Req, Res, UseInterceptors } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiHeader, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AuditInputDigester, noteAudit, RequirePermission } from '../../common/access';
import { ApiProblems, JSON_BODY_ERRORS, PROTECTED_ROUTE_ERRORS } from '../../common/errors/api-error-responses';
import { bodyDigest } from './canonical-input.util';
import { CreditAssessmentDto, CreditAssessmentRequestDto, parseCreditAssessmentRequest } from './credit-assessment.dto';
import { CreditAssessmentService } from './credit-assessment.service';
import {
  IDEMPOTENCY_KEY_HEADER,
  IDEMPOTENCY_REPLAY_HEADERS,
  IdempotencyService,
} from './idempotency/idempotency.service';
import { PanGuardInterceptor } from './pan-guard.interceptor';
import { queryRefusal } from './pan-guard.util';

@ApiTags('finance')
@ApiBearerAuth()
@ApiProblems(...PROTECTED_ROUTE_ERRORS)
@Controller('finance/credit-assessments')
@UseInterceptors(PanGuardInterceptor)
export class CreditAssessmentController {
  constructor(
    private readonly credit: CreditAssessmentService,
    private readonly digester: AuditInputDigester,
    private readonly idempotency: IdempotencyService,
  ) {}

  /** Probability of default, grade, decision and up to four adverse-action reasons for an application. */
  @Post()
  @HttpCode(200)
  @RequirePermission('finance:score', 'credit.assess')
  @ApiHeader(IDEMPOTENCY_KEY_HEADER)
  @ApiBody({ type: CreditAssessmentRequestDto })
  @ApiOkResponse({ type: CreditAssessmentDto, headers: IDEMPOTENCY_REPLAY_HEADERS })
  @ApiProblems(...JSON_BODY_ERRORS, 409, 422, 504)
  async assess(
    @Body() body: unknown,
    @Req() request: FastifyRequest,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<CreditAssessmentDto> {
    // The Idempotency-Key before the body, as on the fraud routes: a malformed key is refused whatever the body, and
    // a retry gets the answer kept for its key (or 422 for another body) before the body is checked again, so an
    // answered application is never refused on retry by rules that changed since. The body is checked in
    // assessOne (a refusal frees the key). Card numbers are refused before either (PanGuardInterceptor, and in the
    // query here), and so is any query parameter (none is read).
    const refusal = queryRefusal(request.query);
    if (refusal) throw refusal;
    return (await this.idempotency.answer(request, reply, () => this.assessOne(body, request))) as CreditAssessmentDto;
  }

  private async assessOne(sent: unknown, request: FastifyRequest): Promise<CreditAssessmentDto> {
    const body = await parseCreditAssessmentRequest(sent);
    noteAudit(request, { model: this.credit.modelRef(), inputDigest: bodyDigest(this.digester, body) });
    const { assessment: result, shadow } = await this.credit.assess(body);
    noteAudit(request, {
      model: result.model,
      output: {
        probabilityOfDefault: result.probabilityOfDefault,
        grade: result.grade,
        decision: result.decision,
        reasons: result.reasons.map((r) => r.code),
        ...(shadow ? { shadow } : {}),
      },
    });
    return { ...result, requestId: String(request.id) };
  }
}
