import { LogLevel, VersioningType } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { AppModule } from './app.module';
import { registerAuditHook } from './audit/audit.hook';
import { registerAccessHook } from './auth/access.hook';
import { RefusalBudgets } from './auth/refusal-limiter';
import { SubjectRateLimit } from './auth/subject-throttler.guard';
import { JwtVerifier } from './auth/jwt-verifier';
import { AuditWriter } from './audit/audit-writer.service';
import { AuditAggregates } from './audit/audit-aggregates';
import { GatewayLogger } from './boot-failure';
import { BodyLimit, ProblemFilter } from './common/errors/problem.filter';
import { createValidationPipe } from './common/errors/validation';
import { registerBodyBudget, UploadBudget } from './common/http/body-budget';
import { refuseOtherBodyMediaTypes } from './common/http/body-media-type';
import { refuseEncodedBodies } from './common/http/content-encoding';
import { refuseRequestsWithoutHost, refuseUnmetExpectations } from './common/http/host-header';
import { refuseUnfinishedUploadsAtClose } from './common/http/unfinished-uploads';
import { cutAnswersNotTaken } from './common/http/answer-timeout';
import { registerGracefulClose } from './common/http/graceful-close';
import { clientErrorHandler } from './common/http/client-errors';
import { CorsPolicy, registerCors } from './common/http/cors';
import { REQUEST_ID_HEADER, requestIdFor } from './common/http/request-id';
import { registerRouteCatalog } from './common/http/route-catalog';
import { registerSecurityHeaders, securityHeaders } from './common/http/security-headers';
import { registerHttpMetrics } from './common/metrics/http-metrics';
import { MetricsService } from './common/metrics/metrics.service';
import { AppConfig, ConfigError, prepareDataDir, productionGaps } from './config/app-config';
import { setupOpenApi } from './openapi/openapi';
import { labelOipJsonAnswers } from './runtime/oip/oip-answer-type';
import { registerOipBinaryBodies } from './runtime/oip/oip-binary';
import { AuditInputDigester } from './common/access';
import { beginBodyDigest } from './domains/finance/canonical-input.util';
import { registerPiecewiseJsonReplies } from './common/http/piecewise-json';
import { MAX_PATH_PARAM_LENGTH } from './common/http/path-params';
import { isDicomBody, registerDicomBodies } from './domains/medical/dicom-bodies';

const LEVELS: LogLevel[] = ['fatal', 'error', 'warn', 'log', 'debug', 'verbose'];

export interface CreateAppOptions {
  /** Skip serving Swagger UI (document generation only needs the routes). */
  withDocs?: boolean;
}

/** Builds the application (not yet listening): used by main.ts, the tests, the benchmarks and the OpenAPI tool. */
export async function createApp(config: AppConfig, options: CreateAppOptions = {}): Promise<NestFastifyApplication> {
  const gaps = productionGaps(config);
  const dataDir = prepareDataDir(config.DATA_DIR);
  if (dataDir) gaps.push(dataDir);
  if (gaps.length > 0) throw new ConfigError(gaps.join('; '));
  // The limit a body is read to: a DICOM parser's (dicom-bodies.ts), else the routes' one. A 413 names it, and a
  // chunked upload counts against MAX_INFLIGHT_BODY_BYTES as that much.
  const bodyLimitOf = (request: FastifyRequest): BodyLimit =>
    isDicomBody(request.headers['content-type'])
      ? { setting: 'MEDICAL_MAX_BODY_BYTES', bytes: config.MEDICAL_MAX_BODY_BYTES }
      : { setting: 'BODY_LIMIT_BYTES', bytes: config.BODY_LIMIT_BYTES };
  const filter = new ProblemFilter(bodyLimitOf);
  const cors = config.CORS_ORIGINS ? new CorsPolicy(config.CORS_ORIGINS, config.CORS_MAX_AGE_S) : undefined;
  const adapter = new FastifyAdapter({
    bodyLimit: config.BODY_LIMIT_BYTES,
    genReqId: requestIdFor,
    requestIdHeader: false,
    logger: false,
    // Not Fastify's own JSON 503 during the close: registerGracefulClose answers those requests.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    // A slow upload cannot hold a socket (and its partial body) forever: 408 after this.
    requestTimeout: config.HTTP_REQUEST_TIMEOUT_MS,
    http: {
      // As Node's own default for a server made with this requestTimeout. Fastify sets requestTimeout
      // after Node made the server (headersTimeout then 60 s), and when headersTimeout is the larger,
      // Node swaps the two: a body would then have 60 s, whatever HTTP_REQUEST_TIMEOUT_MS says.
      headersTimeout: Math.min(60_000, config.HTTP_REQUEST_TIMEOUT_MS),
      // Node checks both every 30 s by default; a quarter of the limit (at least 250 ms) keeps the cut-off near it.
      connectionsCheckingInterval: Math.min(30_000, Math.max(250, Math.floor(config.HTTP_REQUEST_TIMEOUT_MS / 4))),
      // Node's refusal of an HTTP/1.1 request without Host is a bare 400: refuseRequestsWithoutHost answers it.
      requireHostHeader: false,
    },
    // What Node's HTTP parser refuses (a control character in a header, headers over the limit, a
    // request not received in time) is answered as problem+json too.
    clientErrorHandler: clientErrorHandler(config.HTTP_REQUEST_TIMEOUT_MS),
    routerOptions: { maxParamLength: MAX_PATH_PARAM_LENGTH },
    // A URL the router cannot read (bad percent-encoding, a path parameter over its length) is
    // answered before any route or filter: as problem+json too, not Fastify's own JSON.
    frameworkErrors: (error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
      const answer = filter.render(error, request);
      void reply
        .code(answer.status)
        .headers({
          ...securityHeaders(request.url),
          ...cors?.answerHeaders(request.headers.origin),
          ...answer.headers,
          [REQUEST_ID_HEADER]: String(request.id),
        })
        .send(answer.body);
    },
  });
  // Nest's report of an error it rethrows is left out: the caller reports it (main.ts, in one line).
  const logger = new GatewayLogger({
    json: true,
    logLevels: LEVELS.slice(0, LEVELS.indexOf(config.LOG_LEVEL) + 1),
  });
  // bodyParser off: Fastify's own parsers serve, with the OIP binary extension registered below.
  const app = await NestFactory.create<NestFastifyApplication>(AppModule.forRoot(config), adapter, {
    logger,
    bodyParser: false,
    // A provider that cannot start (the database) rejects here, for main.ts to report and exit 1, where
    // Nest would call process.exit itself (a test could not tell a refused boot from a crash).
    abortOnError: false,
  });
  app.enableVersioning({ type: VersioningType.URI, defaultVersion: '1' });
  app.useGlobalPipes(createValidationPipe());
  app.useGlobalFilters(filter);

  const fastify = app.getHttpAdapter().getInstance();
  registerRouteCatalog(fastify);
  // First, so that an answer refused by any later hook carries them too.
  registerSecurityHeaders(fastify);
  const gracefulClose = registerGracefulClose(fastify);
  fastify.addHook('onSend', (request, reply, payload, done) => {
    void reply.header(REQUEST_ID_HEADER, request.id);
    done(null, payload);
  });
  labelOipJsonAnswers(fastify);
  // Before the caller is checked, counted or audited: a preflight carries no token, a refusal must be readable.
  if (cors) await registerCors(fastify, cors);
  if (config.AUDIT_ENABLED) registerAuditHook(fastify, app.get(AuditWriter), app.get(AuditAggregates), filter);
  else logger.warn({ msg: 'AUDIT_ENABLED=false: answers are NOT audited (benchmarks only)' });
  // Counted by the audit hook, refused before the caller is identified.
  refuseRequestsWithoutHost(fastify);
  refuseUnmetExpectations(fastify);
  // Who is calling, before any body is read (after the audit hook, which counts the request first).
  registerAccessHook(fastify, app.get(JwtVerifier), app.get(RefusalBudgets), app.get(SubjectRateLimit));
  // A request that arrives once the close has begun: refused, audited with its caller.
  gracefulClose.refuseLateRequests();
  // After every other onSend hook (the audit's, the request id's): it may hold an answer until its turn.
  gracefulClose.closeConnectionsAfterLastAnswer();
  // Last of the onSend hooks: the limit counts the writing only.
  cutAnswersNotTaken(fastify, config.HTTP_REQUEST_TIMEOUT_MS, (request) =>
    logger.warn({
      msg: 'answer not taken by its client within HTTP_REQUEST_TIMEOUT_MS; connection closed',
      requestId: request.id,
    }),
  );
  refuseEncodedBodies(fastify);
  // A route that reads one media type only refuses another before the body is read (a DICOM file sent as JSON).
  refuseOtherBodyMediaTypes(fastify);
  // A chunked DICOM body may run to the DICOM parsers' limit, not the routes' JSON one.
  registerBodyBudget(fastify, app.get(UploadBudget), (request) => bodyLimitOf(request).bytes);
  refuseUnfinishedUploadsAtClose(fastify);
  registerOipBinaryBodies(fastify, beginBodyDigest(app.get(AuditInputDigester)));
  registerPiecewiseJsonReplies(fastify);
  // No route reads text: Fastify's own text/plain parser handed a JSON route a string, answered 400
  // "(body): must be object" instead of the 415 any other type no route reads gets.
  void fastify.removeContentTypeParser('text/plain');
  registerDicomBodies(fastify, config.MEDICAL_MAX_BODY_BYTES);
  registerHttpMetrics(fastify, app.get(MetricsService).registry);
  if (options.withDocs !== false) setupOpenApi(app);
  return app;
}
