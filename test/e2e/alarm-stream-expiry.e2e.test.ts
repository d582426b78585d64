import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import jwt from 'jsonwebtoken';
import { TOKEN_EXPIRED_COMMENT } from '../../src/common/access';
import { AlarmEvent, PlantStream } from '../../src/domains/manufacturing/plant-stream.service';
import { alarmStream } from '../fixtures/alarm-stream';
import { createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';
import { until } from '../fixtures/until';

const ALARM: AlarmEvent = {
  assetId: 'mill-1',
  site: 'plant-1',
  line: 'line-1',
  state: 'raised',
  metric: 'failure',
  value: 0.9,
  threshold: 0.5,
  at: new Date().toISOString(),
  model: { name: 'machine-failure', version: '1.0.0' },
};

describe('the alarm stream ends when the token that opened it expires', () => {
  let app: NestFastifyApplication;
  let port: number;
  // A delay past setTimeout's limit (2^31-1 ms) is warned of, and cut to 1 ms.
  const overflows: Error[] = [];
  const onWarning = (warning: Error): void => {
    if (warning.name === 'TimeoutOverflowWarning') overflows.push(warning);
  };
  before(async () => {
    process.on('warning', onWarning);
    // No clock skew: the token's own exp is when the stream must end.
    app = await createTestApp({ AUTH_CLOCK_SKEW_S: '0' });
    await app.listen(0, '127.0.0.1');
    port = (app.getHttpServer().address() as AddressInfo).port;
  });
  after(async () => {
    process.off('warning', onWarning);
    await app.close();
  });

  it(
    "ends, with a comment saying so, at expiry; a token valid past setTimeout's limit keeps its stream",
    { timeout: 20_000 },
    async () => {
      // 30 days: more than the 2^31-1 ms a timer can wait, which would otherwise fire at once.
      const longLived = alarmStream(port, bearer(tokenFor(['plant-operator'], { expiresIn: 30 * 86_400 })));
      const shortToken = tokenFor(['plant-operator'], { expiresIn: 2 });
      const expiresAt = (jwt.decode(shortToken) as jwt.JwtPayload).exp! * 1000;
      const shortLived = alarmStream(port, bearer(shortToken));
      await Promise.all([longLived.ready, shortLived.ready]);

      const ended = await shortLived.ended;
      assert.ok(Date.now() >= expiresAt, 'the stream ended before its token expired');
      assert.equal(ended.complete, true, 'the gateway ended the response, rather than cutting the connection');
      // Empty comments are Nest's probes of a paused socket; the one that says why is the last thing sent.
      assert.deepEqual(
        shortLived.comments.filter((c) => c !== ''),
        [TOKEN_EXPIRED_COMMENT],
      );

      // The other stream is still open, and still delivers.
      assert.deepEqual(longLived.comments, [], 'the long-lived stream was ended');
      app.get(PlantStream).alarms.next(ALARM);
      await until('the alarm on the long-lived stream', () => (longLived.events.length > 0 ? true : undefined), 5000);
      assert.deepEqual(longLived.events, [ALARM]);
      assert.deepEqual(shortLived.events, []);
      assert.deepEqual(overflows, [], 'a timer was asked to wait past what setTimeout can');
      longLived.close();
      await longLived.ended;
    },
  );
});
