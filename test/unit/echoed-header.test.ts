import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { CARD_NUMBER_KEY, echoedHeaderValue, echoedPath } from '../../src/common/echoed-key';
import { AppError } from '../../src/common/errors/app-error';
import { ProblemFilter, unreadMediaType } from '../../src/common/errors/problem.filter';
import { charsetRefusal } from '../../src/common/http/json-charset';
import { containsPan } from '../../src/common/pan';

const PAN = '4111111111111111';

/** The problem the filter answers `error` with, for a GET of `url`. */
function answer(url: string, error: unknown): Record<string, unknown> {
  let body = '';
  const reply = {
    status: () => reply,
    header: () => reply,
    send: (sent: string) => {
      body = sent;
      return reply;
    },
  };
  const request = { url, method: 'GET', id: 'req-1', headers: {}, raw: { socket: {} } } as unknown as FastifyRequest;
  new ProblemFilter().respond(error, request, reply as unknown as FastifyReply);
  return JSON.parse(body) as Record<string, unknown>;
}

describe('refusals never quote a card number the caller put in a header or a path', () => {
  it('a header value is quoted up to 64 characters, a card number never', () => {
    assert.equal(echoedHeaderValue('text/plain'), 'text/plain');
    assert.equal(echoedHeaderValue('x'.repeat(100)), 'x'.repeat(64));
    assert.equal(echoedHeaderValue(`text/${PAN}`), CARD_NUMBER_KEY);
    // One the cut would make of a longer run of digits.
    assert.equal(echoedHeaderValue(`${'x'.repeat(48)}${PAN}0000`), CARD_NUMBER_KEY);
    for (const refusal of [
      unreadMediaType(`application/${PAN}; charset=utf-8`),
      unreadMediaType(`4111 1111 1111 1111`),
      charsetRefusal(`application/json; charset=${PAN}`),
    ]) {
      assert.ok(refusal);
      assert.equal(refusal.code, 'UNSUPPORTED_MEDIA_TYPE');
      assert.ok(!containsPan(JSON.stringify([refusal.detail, refusal.fields])), refusal.detail);
      assert.ok(refusal.detail.includes(CARD_NUMBER_KEY), refusal.detail);
    }
    assert.equal(unreadMediaType('text/plain').fields[0].reason, '"text/plain" is not a media type this route reads');
  });

  it("a problem's instance names a path segment holding a card number as (card number)", () => {
    assert.equal(echoedPath('/v1/things'), '/v1/things');
    assert.equal(echoedPath(`/v1/cards/${PAN}`), `/v1/cards/${CARD_NUMBER_KEY}`);
    assert.equal(echoedPath('/v1/cards/%34111111111111111'), `/v1/cards/${CARD_NUMBER_KEY}`);
    assert.equal(
      echoedPath('/v1/4111/1111/1111/1111'),
      `/${CARD_NUMBER_KEY}/${CARD_NUMBER_KEY}/${CARD_NUMBER_KEY}/${CARD_NUMBER_KEY}/${CARD_NUMBER_KEY}`,
    );
    const problem = answer(`/v1/cards/${PAN}?x=1`, new AppError('NOT_FOUND', 'No route matches GET on this path'));
    assert.equal(problem.instance, `/v1/cards/${CARD_NUMBER_KEY}`);
    assert.ok(!containsPan(JSON.stringify(problem)));
  });
});
