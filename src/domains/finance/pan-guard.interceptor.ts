import { CallHandler, ExecutionContext, Injectable, NestInterceptor } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { Observable } from 'rxjs';
import { lostBodyDigits } from '../../common/http/json-lost-digits';
import { panRefusal } from './pan-guard.util';

/**
 * Runs before validation (interceptors precede pipes): a request carrying anything that looks like
 * a card number, in any field, known or not, is refused with 422 naming the field, before any part
 * of it can reach a log, an error message or the database.
 */
@Injectable()
export class PanGuardInterceptor implements NestInterceptor {
  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const request = context.switchToHttp().getRequest<FastifyRequest>();
    const refusal = panRefusal(request.body, undefined, undefined, lostBodyDigits(request));
    if (refusal) throw refusal;
    return next.handle();
  }
}
