import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { describe, it } from 'node:test';
import { describeBootFailure } from '../../src/boot-failure';
import { loadConfig } from '../../src/config/app-config';

function thrown(call: () => unknown): unknown {
  try {
    call();
  } catch (error) {
    return error;
  }
  assert.fail('expected a throw');
}

describe('a failed boot in one line', () => {
  it('an expected error is its message, without its stack; a configuration error is one line', () => {
    const config = describeBootFailure(thrown(() => loadConfig({ PORT: 'eighty', LOG_LEVEL: 'loud' })));
    assert.deepEqual(Object.keys(config), ['error']);
    assert.doesNotMatch(config.error, /\n/);
    assert.match(config.error, /^invalid configuration: PORT="eighty": .*; LOG_LEVEL="loud": /);
    assert.deepEqual(describeBootFailure(new Error('no token verification keys')), {
      error: 'no token verification keys',
    });
  });

  it('a cause the message does not tell is added to it', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 10.0.0.5:5432'), { code: 'ECONNREFUSED' });
    assert.deepEqual(describeBootFailure(new Error(`cannot connect: ${refused.message}`, { cause: refused })), {
      error: 'cannot connect: connect ECONNREFUSED 10.0.0.5:5432',
    });
    assert.deepEqual(describeBootFailure(new Error('embedded database did not start', { cause: refused })), {
      error: 'embedded database did not start: connect ECONNREFUSED 10.0.0.5:5432',
    });
  });

  it('a listen that failed names the address and why, in words', async () => {
    const holder = createServer();
    await new Promise<void>((listening) => holder.listen(0, '127.0.0.1', listening));
    const { port } = holder.address() as { port: number };
    const second = createServer();
    try {
      const error = await new Promise<Error>((failed) => second.once('error', failed).listen(port, '127.0.0.1'));
      assert.deepEqual(describeBootFailure(error), {
        error: `cannot listen on 127.0.0.1:${port}: the port is in use by another process`,
      });
    } finally {
      await new Promise((closed) => holder.close(closed));
    }
    const v6 = Object.assign(new Error('listen EACCES: permission denied :::80'), {
      code: 'EACCES',
      syscall: 'listen',
      address: '::',
      port: 80,
    });
    assert.deepEqual(describeBootFailure(v6), {
      error: 'cannot listen on [::]:80: not permitted (a port below 1024 needs privileges)',
    });
  });

  it('a HOST that does not resolve is named, in words', () => {
    const lookup = Object.assign(new Error('getaddrinfo ENOTFOUND nosuch-host.invalid'), {
      code: 'ENOTFOUND',
      syscall: 'getaddrinfo',
      hostname: 'nosuch-host.invalid',
    });
    assert.deepEqual(describeBootFailure(lookup), {
      error:
        'cannot listen on nosuch-host.invalid: the name does not resolve (ENOTFOUND); set HOST to an address or a name of this machine',
    });
  });

  it('a bug keeps its stack', () => {
    const bug = thrown(() => (undefined as unknown as { start(): void }).start());
    const described = describeBootFailure(bug);
    assert.match(described.error, /Cannot read properties of undefined/);
    assert.match(described.stack ?? '', /^TypeError: .*\n\s+at /);
  });
});
