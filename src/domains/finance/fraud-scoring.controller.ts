import { Body, Controller, HttpCode, Post, Req, Res } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiHeader, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { DIGEST_JSON_BODY } from '../../common/http/raw-json';
import { AddRouteConfig } from '../../common/http/route-config';
import { AuditInputDigester, noteAudit, RequirePermission, withInputDigest } from '../../common/access';
import { ApiProblems, JSON_BODY_ERRORS, PROTECTED_ROUTE_ERRORS } from '../../common/errors/api-error-responses';
import { decisionCounts, shadowSummary } from './batch-summary.util';
import {
  FRAUD_DECISIONS,
  FraudBatchRequestDto,
  FraudBatchResultDto,
  FraudScoreDto,
  FraudScoreRequestDto,
} from './fraud-score.dto';
import { envelopePanRefusal, parseFraudBatch, parseFraudScoreRequest } from './fraud-item.schema';
import { FraudScoringService } from './fraud-scoring.service';
import { bodyDigest, bodyDigestAsync } from './canonical-input.util';
import {
  IDEMPOTENCY_KEY_HEADER,
  IDEMPOTENCY_REPLAY_HEADERS,
  IdempotencyService,
} from './idempotency/idempotency.service';
import { panRefusal, queryRefusal } from './pan-guard.util';
import { lostBodyDigits } from '../../common/http/json-lost-digits';

@ApiTags('finance')
@ApiBearerAuth()
@ApiProblems(...PROTECTED_ROUTE_ERRORS)
@Controller('finance/fraud-scores')
export class FraudScoringController {
  constructor(
    private readonly fraud: FraudScoringService,
    private readonly digester: AuditInputDigester,
    private readonly idempotency: IdempotencyService,
  ) {}

  /** Scores one card transaction: fraud probability, decision, and the inputs that drove it. */
  @Post()
  @HttpCode(200)
  @RequirePermission('finance:score', 'fraud.score')
  @ApiHeader(IDEMPOTENCY_KEY_HEADER)
  @ApiBody({ type: FraudScoreRequestDto })
  @ApiOkResponse({ type: FraudScoreDto, headers: IDEMPOTENCY_REPLAY_HEADERS })
  @ApiProblems(...JSON_BODY_ERRORS, 409, 422, 504)
  async score(
    @Body() body: unknown,
    @Req() request: FastifyRequest,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<FraudScoreDto> {
    // Before anything reads the body (nothing validates an `unknown` body before this): anything that looks
    // like a card number, in any field, is refused with 422 before it can reach a log, an error or the database.
    const refusal = panRefusal(body, undefined, undefined, lostBodyDigits(request)) ?? queryRefusal(request.query);
    if (refusal) throw refusal;
    return (await this.idempotency.answer(request, reply, () => this.scoreOne(body, request))) as FraudScoreDto;
  }

  private async scoreOne(body: unknown, request: FastifyRequest): Promise<FraudScoreDto> {
    const transaction = parseFraudScoreRequest(body);
    this.fraud.checkTime(transaction);
    const model = this.fraud.modelRef();
    noteAudit(request, { model, inputDigest: bodyDigest(this.digester, transaction) });
    const { score: result, shadow } = await this.fraud.score(transaction);
    noteAudit(request, {
      model: result.model,
      output: { fraudProbability: result.fraudProbability, decision: result.decision, ...(shadow ? { shadow } : {}) },
    });
    return { ...result, requestId: String(request.id) };
  }

  /**
   * Scores up to 10,000 transactions; an invalid one (a card number included) gets its own error
   * and the rest are scored. A transactionId is scored once: a later valid item with the same one
   * gets the error DUPLICATE_TRANSACTION_ID naming the first.
   */
  @Post('batch')
  @HttpCode(200)
  @AddRouteConfig({ [DIGEST_JSON_BODY]: true })
  @RequirePermission('finance:score', 'fraud.score-batch')
  @ApiHeader(IDEMPOTENCY_KEY_HEADER)
  @ApiBody({ type: FraudBatchRequestDto })
  @ApiOkResponse({ type: FraudBatchResultDto, headers: IDEMPOTENCY_REPLAY_HEADERS })
  @ApiProblems(...JSON_BODY_ERRORS, 409, 422, 504)
  async scoreBatch(
    @Body() body: unknown,
    @Req() request: FastifyRequest,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<FraudBatchResultDto> {
    // Before the Idempotency-Key, as on the single route: an envelope's card number is a PAN_DETECTED whatever the
    // key (an answered key's 422 IDEMPOTENCY_KEY_REUSED came first, and its audit row did not say a card number came).
    const refusal = envelopePanRefusal(body, lostBodyDigits(request)) ?? queryRefusal(request.query);
    if (refusal) throw refusal;
    return (await this.idempotency.answer(request, reply, () => this.scoreMany(body, request))) as FraudBatchResultDto;
  }

  private async scoreMany(body: unknown, request: FastifyRequest): Promise<FraudBatchResultDto> {
    const transactions = parseFraudBatch(body);
    const model = this.fraud.modelRef();
    // The keyed digest of the whole body (about 7 ms of the event loop for 1,000 transactions) is worked out
    // on the digest thread from the body's bytes, begun while they were parsed (DIGEST_JSON_BODY), as
    // scoreBatch checks the items here and the runtime scores them (with an Idempotency-Key, the key's
    // check has waited for it already; a small body is digested at once).
    noteAudit(request, { model });
    const { items, shadow } = await withInputDigest(request, bodyDigestAsync(this.digester, body), () =>
      this.fraud.scoreBatch(transactions),
    );
    const scored = items.filter((i) => i.result).length;
    const decisions = decisionCounts(items, FRAUD_DECISIONS);
    noteAudit(request, {
      output: {
        transactions: items.length,
        scored,
        failed: items.length - scored,
        decisions,
        ...(shadow ? { shadow: shadowSummary(items, shadow, FRAUD_DECISIONS) } : {}),
      },
    });
    return { items, scored, failed: items.length - scored, model, requestId: String(request.id) };
  }
}
