import assert from 'node:assert/strict';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { UploadBudget } from '../../src/common/http/body-budget';
import { createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';
import { until } from '../fixtures/until';

describe('graceful shutdown', () => {
  it('answers an upload still streaming in 503 SHUTTING_DOWN with Retry-After, and closes without waiting for it', async () => {
    const app = await createTestApp({ SHUTDOWN_GRACE_MS: '60000' });
    await app.listen(0, '127.0.0.1');
    const { port } = app.getHttpServer().address() as AddressInfo;
    // A batch announced at 1 MB of which only the start ever comes, as from a slow or stalled sender.
    const upload = httpRequest({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: '/v1/finance/fraud-scores/batch',
      headers: {
        authorization: bearer(tokenFor(['risk-engine'])),
        'content-type': 'application/json',
        'content-length': String(1_000_000),
      },
    });
    const answered = new Promise<IncomingMessage>((ok, fail) => upload.once('response', ok).once('error', fail));
    upload.write('{"transactions":[');
    await until('the upload to be received', () => (app.get(UploadBudget).held > 0 ? true : undefined));

    const closed = app.close();
    const res = await within(answered, 'the upload was not answered');
    let text = '';
    for await (const chunk of res) text += String(chunk);
    assert.equal(res.statusCode, 503, text);
    assert.equal(res.headers['retry-after'], '1');
    assert.equal((JSON.parse(text) as { code: string }).code, 'SHUTTING_DOWN');
    upload.destroy();
    await within(closed, 'close waited for the unfinished upload');
  });
});

/** Within seconds, not after the 60 s grace nor the 300 s request timeout. */
function within<T>(promise: Promise<T>, failure: string): Promise<T> {
  return Promise.race([
    promise,
    new Promise<never>((_, fail) => setTimeout(() => fail(new Error(failure)), 10_000).unref()),
  ]);
}
