import assert from 'node:assert/strict';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { UploadBudget } from '../../src/common/http/body-budget';
import { bundledModelsDir } from '../fixtures/paths';
import { createTestApp } from '../fixtures/test-app';
import { bearer, tokenFor } from '../fixtures/test-auth';

/**
 * A client that posts an inference and reads none of its answer: an 8-image lesion map as JSON (11 MB) waited in
 * the process, with its upload's share of MAX_INFLIGHT_BODY_BYTES, for as long as the client kept the connection.
 */
describe('an answer its client does not take', () => {
  let app: NestFastifyApplication;
  let port: number;
  before(async () => {
    app = await createTestApp({ MODELS_DIR: bundledModelsDir(['medical']), HTTP_REQUEST_TIMEOUT_MS: '1000' });
    await app.listen(0, '127.0.0.1');
    port = (app.getHttpServer().address() as AddressInfo).port;
  });
  after(() => app.close());

  it('is cut off after HTTP_REQUEST_TIMEOUT_MS, and its upload budget released', async () => {
    const budget = app.get(UploadBudget);
    const frames = 8;
    const body = Buffer.from(
      JSON.stringify({
        inputs: [
          { name: 'image', shape: [frames, 1, 256, 256], datatype: 'FP32', data: Array(frames * 65536).fill(0) },
        ],
      }),
    );
    const socket: Socket = connect(port, '127.0.0.1');
    try {
      socket.write(
        'POST /v2/models/breast-us-lesion/infer HTTP/1.1\r\nHost: gateway\r\n' +
          `Authorization: ${bearer(tokenFor(['ml-admin']))}\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${body.length}\r\n\r\n`,
      );
      socket.write(body);
      socket.pause(); // nothing of the answer is read
      const started = Date.now();
      while (budget.held === 0) {
        assert.ok(Date.now() - started < 10_000, 'the upload was never counted');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      // Run, audited, written as far as the socket takes it; then, a second later, cut off.
      while (budget.held > 0) {
        assert.ok(Date.now() - started < 30_000, `the answer still holds ${budget.held} bytes of the upload budget`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    } finally {
      socket.destroy();
    }
  });
});
