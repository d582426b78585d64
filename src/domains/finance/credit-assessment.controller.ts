import { Body, Controller, HttpCode, Post, Req, Res, UseInterceptors } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiHeader, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AuditInputDigester, noteAudit, RequirePermission, withInputDigest } from '../../common/access';
import { ApiProblems, JSON_BODY_ERRORS, PROTECTED_ROUTE_ERRORS } from '../../common/errors/api-error-responses';
import { DIGEST_JSON_BODY } from '../../common/http/raw-json';
import { AddRouteConfig } from '../../common/http/route-config';
import { decisionCounts, shadowSummary } from './batch-summary.util';
import { bodyDigest, bodyDigestAsync } from './canonical-input.util';
import {
  CREDIT_DECISIONS,
  CreditAssessmentDto,
  CreditAssessmentRequestDto,
  CreditBatchItemDto,
  CreditBatchRequestDto,
  CreditBatchResultDto,
  parseCreditAssessmentRequest,
} from './credit-assessment.dto';
import { CreditAssessmentService } from './credit-assessment.service';
import { lostBodyDigits } from '../../common/http/json-lost-digits';
import { creditBatchChecks, creditEnvelopePanRefusal, parseCreditBatch } from './credit-batch.util';
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
export class CreditAssessmentController {
  constructor(
    private readonly credit: CreditAssessmentService,
    private readonly digester: AuditInputDigester,
    private readonly idempotency: IdempotencyService,
  ) {}

  /** Probability of default, grade, decision and up to four adverse-action reasons for an application. */
  @Post()
  @HttpCode(200)
  @UseInterceptors(PanGuardInterceptor)
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

  /**
   * Assesses up to 1,000 applications (a portfolio review, a pre-screening list); an invalid one (a card number
   * included) gets its own error and the rest are assessed. An applicationId is assessed once: a later valid item
   * with the same one gets the error DUPLICATE_APPLICATION_ID naming the first.
   */
  @Post('batch')
  @HttpCode(200)
  @AddRouteConfig({ [DIGEST_JSON_BODY]: true })
  @RequirePermission('finance:score', 'credit.assess-batch')
  @ApiHeader(IDEMPOTENCY_KEY_HEADER)
  @ApiBody({ type: CreditBatchRequestDto })
  @ApiOkResponse({ type: CreditBatchResultDto, headers: IDEMPOTENCY_REPLAY_HEADERS })
  @ApiProblems(...JSON_BODY_ERRORS, 409, 422, 504)
  async assessBatch(
    @Body() body: unknown,
    @Req() request: FastifyRequest,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<CreditBatchResultDto> {
    // As on the fraud batch: a card number in the envelope is refused before the Idempotency-Key is read, one in an
    // item is that item's error.
    const refusal = creditEnvelopePanRefusal(body, lostBodyDigits(request)) ?? queryRefusal(request.query);
    if (refusal) throw refusal;
    return (await this.idempotency.answer(request, reply, () =>
      this.assessMany(body, request),
    )) as CreditBatchResultDto;
  }

  private async assessMany(body: unknown, request: FastifyRequest): Promise<CreditBatchResultDto> {
    const applications = parseCreditBatch(body);
    const model = this.credit.modelRef();
    noteAudit(request, { model });
    const { items, shadow } = await withInputDigest(request, bodyDigestAsync(this.digester, body), async () => {
      const checks = await creditBatchChecks(applications);
      const valid = checks.flatMap((check, index) => ('application' in check ? [{ index, ...check }] : []));
      const { assessments, shadow } = await this.credit.assessMany(valid.map((v) => v.application));
      const items: CreditBatchItemDto[] = checks.map((check, index) =>
        'error' in check ? { index, error: check.error } : { index },
      );
      valid.forEach(
        (v, k) => (items[v.index].result = { applicationId: v.application.applicationId, ...assessments[k] }),
      );
      return { items, shadow };
    });
    const assessed = items.filter((i) => i.result).length;
    noteAudit(request, {
      output: {
        applications: items.length,
        assessed,
        failed: items.length - assessed,
        decisions: decisionCounts(items, CREDIT_DECISIONS),
        ...(shadow ? { shadow: shadowSummary(items, shadow, CREDIT_DECISIONS) } : {}),
      },
    });
    return { items, assessed, failed: items.length - assessed, model, requestId: String(request.id) };
  }
}
