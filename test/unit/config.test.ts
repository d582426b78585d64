import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { auditSecret, retiredAuditSecrets } from '../../src/audit/input-digest';
import { ConfigError, loadConfig, prepareDataDir, productionGaps } from '../../src/config/app-config';

describe('configuration', () => {
  it('has working defaults with an empty environment', () => {
    const config = loadConfig({});
    assert.equal(config.PORT, 3000);
    assert.equal(config.INFERENCE_DEVICE, 'auto');
    assert.equal(config.MODELS_DIR, 'models');
    assert.ok(config.WORKER_POOL_SIZE >= 1);
    assert.ok(config.intraOpThreads >= 1);
  });

  it('converts numbers and applies overrides', () => {
    const config = loadConfig({ PORT: '8080', WORKER_POOL_SIZE: '3', ORT_INTRA_OP_THREADS: '2', BATCH_MAX_SIZE: '16' });
    assert.equal(config.PORT, 8080);
    assert.equal(config.WORKER_POOL_SIZE, 3);
    assert.equal(config.intraOpThreads, 2);
    assert.equal(config.BATCH_MAX_SIZE, 16);
  });

  it('stops with every bad variable named', () => {
    assert.throws(
      () =>
        loadConfig({
          INFERENCE_DEVICE: 'tpu',
          PORT: 'eighty',
          WORKER_POOL_SIZE: '0',
          // Longer than a Node.js timer takes: it would fire after 1 ms.
          INFERENCE_TIMEOUT_MS: '2147483648',
          SHUTDOWN_GRACE_MS: '3000000000',
          BATCH_MAX_QUEUE_DELAY_MS: '3000000000',
          RATE_LIMIT_WINDOW_MS: '3000000000',
          AUTH_REFUSAL_WINDOW_MS: '3000000000',
          AUTH_REFUSAL_LIMIT: '-1',
          MANUFACTURING_RETENTION_DAYS: '-3',
          MANUFACTURING_DEAD_LETTER_LIMIT: '-1',
        }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.message, /INFERENCE_DEVICE="tpu": INFERENCE_DEVICE must be one of auto, cuda, cpu/);
        assert.match(error.message, /PORT="eighty"/);
        assert.match(error.message, /WORKER_POOL_SIZE=0/);
        assert.match(error.message, /INFERENCE_TIMEOUT_MS=2147483648/);
        for (const name of [
          'SHUTDOWN_GRACE_MS',
          'BATCH_MAX_QUEUE_DELAY_MS',
          'RATE_LIMIT_WINDOW_MS',
          'AUTH_REFUSAL_WINDOW_MS',
        ]) {
          assert.match(error.message, new RegExp(`${name}=3000000000`));
        }
        assert.match(error.message, /AUTH_REFUSAL_LIMIT=-1/);
        assert.match(error.message, /MANUFACTURING_RETENTION_DAYS=-3/);
        assert.match(error.message, /MANUFACTURING_DEAD_LETTER_LIMIT=-1/);
        return true;
      },
    );
  });

  it('refuses a DATABASE_URL that is not a PostgreSQL URL, without printing it', () => {
    assert.equal(loadConfig({ DATABASE_URL: 'postgres://u:p@db:5432/x' }).DATABASE_URL, 'postgres://u:p@db:5432/x');
    assert.throws(
      () => loadConfig({ DATABASE_URL: 'not a url with pass-word' }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.message, /DATABASE_URL must be a postgres:\/\/ or postgresql:\/\/ URL/);
        assert.doesNotMatch(error.message, /pass-word/);
        return true;
      },
    );
  });

  it('takes DATABASE_LISTEN_URL beside DATABASE_URL, and refuses it alone or malformed without printing it', () => {
    const url = 'postgres://u:s3cr3t@db:5432/x';
    assert.equal(loadConfig({ DATABASE_URL: url, DATABASE_LISTEN_URL: url }).DATABASE_LISTEN_URL, url);
    for (const env of [
      { DATABASE_LISTEN_URL: url },
      { DATABASE_URL: url, DATABASE_LISTEN_URL: 'mysql://u:s3cr3t@db' },
    ]) {
      assert.throws(
        () => loadConfig(env),
        (error: Error) => {
          assert.ok(error instanceof ConfigError);
          assert.match(error.message, /DATABASE_LISTEN_URL=\(secret\): .*(needs DATABASE_URL|postgres:\/\/)/);
          assert.doesNotMatch(error.message, /s3cr3t/);
          return true;
        },
      );
    }
  });

  it('refuses a DATABASE_URL or MQTT_URL whose port cannot be connected to, naming it without printing it', () => {
    for (const [key, url] of [
      ['MQTT_URL', 'mqtt://u:s3cr3t@127.0.0.1:99999'],
      ['MQTT_URL', 'mqtts://u:s3cr3t@broker:0'],
      ['MQTT_URL', 'ws://u:s3cr3t@[::1]:65536/mqtt'],
      ['DATABASE_URL', 'postgres://u:s3cr3t@127.0.0.1:99999/db'],
    ]) {
      assert.throws(
        () => loadConfig({ [key]: url }),
        (error: unknown) => {
          assert.ok(error instanceof ConfigError);
          assert.match(error.message, new RegExp(`${key}=\\(secret\\): ${key} must give a port from 1 to 65535`), url);
          assert.doesNotMatch(error.message, /s3cr3t/);
          return true;
        },
      );
    }
    assert.throws(
      () => loadConfig({ MQTT_URL: 'mqtt://u:s3cr3t@broker:abc' }),
      /MQTT_URL=\(secret\): MQTT_URL must give its port/,
    );
    for (const url of ['mqtt://u:p@broker:1883', 'mqtt://broker', 'mqtts://broker:', 'wss://u:p@[::1]:8884/mqtt']) {
      assert.equal(loadConfig({ MQTT_URL: url }).MQTT_URL, url);
    }
    for (const url of [
      'postgres://u:p@db:65535/x',
      'postgresql://u:p:x@db/x',
      'postgres:///x?host=/var/run/postgresql',
    ]) {
      assert.equal(loadConfig({ DATABASE_URL: url }).DATABASE_URL, url);
    }
  });

  it('refuses a DATABASE_URL or MQTT_URL whose percent-encoding is broken, naming it without printing it', () => {
    for (const [key, url] of [
      ['DATABASE_URL', 'postgres://gateway:s3cr3t%zz@db:5432/audit'],
      ['DATABASE_URL', 'postgres://gateway:s3cr3t@db:5432/au%E0%A4dit'],
      ['MQTT_URL', 'mqtt://us%er:s3cr3t@broker:1883'],
    ]) {
      assert.throws(
        () => loadConfig({ [key]: url }),
        (error: unknown) => {
          assert.ok(error instanceof ConfigError);
          assert.match(
            error.message,
            new RegExp(`${key}=\\(secret\\): ${key} must be a URL whose user, password and path`),
          );
          assert.doesNotMatch(error.message, /s3cr3t/);
          return true;
        },
      );
    }
    assert.equal(loadConfig({ DATABASE_URL: 'postgres://u:p%40ss@db/x' }).DATABASE_URL, 'postgres://u:p%40ss@db/x');
  });

  it('refuses a MEDICAL_DIMSE_FORWARD port outside 1-65535, with the other bad variables', () => {
    for (const forward of ['PACS@pacs.local:99999', 'PACS@pacs.local:0']) {
      assert.throws(
        () => loadConfig({ MEDICAL_DIMSE_FORWARD: forward, PORT: 'eighty' }),
        (error: unknown) => {
          assert.ok(error instanceof ConfigError);
          assert.match(
            error.message,
            /MEDICAL_DIMSE_FORWARD=".*": MEDICAL_DIMSE_FORWARD must give a port from 1 to 65535/,
          );
          assert.match(error.message, /PORT="eighty": /);
          return true;
        },
      );
    }
    assert.equal(
      loadConfig({ MEDICAL_DIMSE_FORWARD: 'PACS@pacs.local:104' }).MEDICAL_DIMSE_FORWARD,
      'PACS@pacs.local:104',
    );
  });

  it('in production, names every missing secret at once: token keys and AUDIT_HMAC_SECRET', () => {
    assert.deepEqual(productionGaps(loadConfig({ NODE_ENV: 'production' })), [
      'no token verification keys: set AUTH_PUBLIC_KEYS or AUTH_JWKS_FILE (or AUTH_HS256_SECRET with HS256 in AUTH_ALGORITHMS)',
      'AUDIT_HMAC_SECRET must be set in production (at least 32 characters)',
    ]);
    assert.deepEqual(
      productionGaps(
        loadConfig({ NODE_ENV: 'production', AUTH_JWKS_FILE: '/keys/jwks.json', AUDIT_HMAC_SECRET: 'x'.repeat(32) }),
      ),
      [],
    );
    assert.deepEqual(productionGaps(loadConfig({})), []);
  });

  it('never prints a secret, not even a bad one', () => {
    assert.throws(
      () => loadConfig({ AUDIT_HMAC_SECRET: 'short-secret', AUTH_HS256_SECRET: 'also-short' }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.message, /AUDIT_HMAC_SECRET=\(secret\)/);
        assert.doesNotMatch(error.message, /short-secret|also-short/);
        return true;
      },
    );
  });

  it('takes retired audit secrets as a JSON array, newest first, and refuses a bad list naming the item, never a secret', () => {
    const current = 'the current audit secret, 32 characters long';
    const retired = ['the secret, retired "last" year, with, commas', 'an older secret: colons; and spaces too'];
    const config = loadConfig({ AUDIT_HMAC_SECRET: current, AUDIT_HMAC_PREVIOUS_SECRETS: JSON.stringify(retired) });
    assert.deepEqual(config.AUDIT_HMAC_PREVIOUS_SECRETS, retired);
    assert.equal(loadConfig({}).AUDIT_HMAC_PREVIOUS_SECRETS, undefined);
    const refusal = (value: string): string => {
      try {
        loadConfig({ AUDIT_HMAC_SECRET: current, AUDIT_HMAC_PREVIOUS_SECRETS: value });
      } catch (error) {
        assert.ok(error instanceof ConfigError);
        for (const secret of [current, ...retired]) assert.ok(!error.message.includes(secret), error.message);
        return error.message;
      }
      return 'taken';
    };
    const named = (reason: string) =>
      `invalid configuration: AUDIT_HMAC_PREVIOUS_SECRETS=(secret): AUDIT_HMAC_PREVIOUS_SECRETS ${reason}`;
    const notAList = named(
      'must be a JSON array of strings, the newest retired secret first: ["<secret>", "<older secret>"]',
    );
    // A comma-separated list, a bare secret, a list with a number: not taken as some split of them.
    assert.equal(refusal(retired.join(',')), notAList);
    assert.equal(refusal(retired[0]), notAList);
    assert.equal(refusal(JSON.stringify([retired[0], 42])), notAList);
    assert.equal(refusal(JSON.stringify({ secret: retired[0] })), notAList);
    assert.equal(refusal(JSON.stringify([retired[0], 'short'])), named('item 2 is shorter than 32 characters'));
    assert.equal(
      refusal(JSON.stringify([retired[0], current])),
      named('item 2 is AUDIT_HMAC_SECRET itself: only a secret another replaced is retired'),
    );
    assert.equal(refusal(JSON.stringify([...retired, retired[0]])), named('item 3 repeats item 1'));
  });

  it('a retired secret equal to the one generated outside production is refused where the secrets are read', () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'gateway-config-test-'));
    try {
      const generated = auditSecret(loadConfig({ DATA_DIR: dataDir })).toString();
      const other = 'an older secret, 32 characters or more';
      const config = (retired: string[]) =>
        loadConfig({ DATA_DIR: dataDir, AUDIT_HMAC_PREVIOUS_SECRETS: JSON.stringify(retired) });
      assert.deepEqual(retiredAuditSecrets(config([other])), [Buffer.from(other)]);
      assert.throws(
        () => retiredAuditSecrets(config([other, generated])),
        /^Error: AUDIT_HMAC_PREVIOUS_SECRETS item 2 is the current audit secret: only a replaced one is retired$/,
      );
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('anchors audit chain heads every minute in DATA_DIR by default; 0 turns it off, a negative interval is refused', () => {
    const defaults = loadConfig({ DATA_DIR: '/srv/gateway' });
    assert.equal(defaults.AUDIT_ANCHOR_INTERVAL_MS, 60_000);
    assert.equal(defaults.auditAnchorFile, '/srv/gateway/audit-anchors.jsonl');
    const set = loadConfig({ AUDIT_ANCHOR_INTERVAL_MS: '0', AUDIT_ANCHOR_FILE: '/worm/anchors.jsonl' });
    assert.equal(set.AUDIT_ANCHOR_INTERVAL_MS, 0);
    assert.equal(set.auditAnchorFile, '/worm/anchors.jsonl');
    assert.throws(() => loadConfig({ AUDIT_ANCHOR_INTERVAL_MS: '-1' }), /AUDIT_ANCHOR_INTERVAL_MS/);
  });

  it('refuses to turn the audit trail off in production', () => {
    assert.equal(loadConfig({ AUDIT_ENABLED: 'false' }).AUDIT_ENABLED, false);
    assert.throws(
      () => loadConfig({ NODE_ENV: 'production', AUDIT_ENABLED: 'false' }),
      /cannot be turned off in production/,
    );
    // Named with every other bad variable, not alone.
    assert.throws(
      () =>
        loadConfig({
          NODE_ENV: 'production',
          AUDIT_ENABLED: 'false',
          PORT: 'abc',
          MQTT_URL: 'mqtt://u:s3cr3t@h:99999',
        }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.match(error.message, /AUDIT_ENABLED=false: the audit trail cannot be turned off in production/);
        assert.match(error.message, /PORT="abc": /);
        assert.match(error.message, /MQTT_URL=\(secret\): MQTT_URL must give a port/);
        return true;
      },
    );
  });

  it('DATA_DIR: a file in its place or a folder it may not write is named as the variable; one still to be made is made', () => {
    const root = mkdtempSync(join(tmpdir(), 'data-dir-gap-'));
    try {
      const file = join(root, 'a-file');
      writeFileSync(file, '');
      assert.equal(prepareDataDir(file), `DATA_DIR ${file}: not a directory`);
      const later = join(root, 'later', 'data');
      assert.equal(prepareDataDir(later), undefined);
      assert.equal(statSync(later).mode & 0o777, 0o700);
      assert.deepEqual(readdirSync(later), [], 'its write check leaves nothing behind');
      assert.equal(prepareDataDir(root), undefined);
      assert.match(prepareDataDir(join(file, 'below')) ?? '', /^DATA_DIR .*: cannot be read \(ENOTDIR\)$/);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it(
    'DATA_DIR: one that cannot be made, or takes no folder, is named with the reason at once (never a hang on /proc)',
    {
      skip: process.platform !== 'linux' || process.getuid?.() !== 0 ? 'needs Linux and root' : false,
    },
    () => {
      assert.equal(prepareDataDir('/proc/x/data'), 'DATA_DIR /proc/x/data: cannot be made (ENOENT from mkdir /proc/x)');
      assert.equal(prepareDataDir('/proc'), 'DATA_DIR /proc: cannot make a folder in it (ENOENT)');
      assert.match(
        prepareDataDir('/sys/gateway') ?? '',
        /^DATA_DIR \/sys\/gateway: cannot be made \(E[A-Z]+ from mkdir \/sys\/gateway\)$/,
      );
    },
  );

  it('FINANCE_EARLIEST_TIME: 2000-01-01 by default; an instant with its zone, not in the future', () => {
    assert.deepEqual(loadConfig({}).financeEarliestTime, { ms: Date.UTC(2000, 0, 1), text: '2000-01-01T00:00:00Z' });
    const taken = loadConfig({ FINANCE_EARLIEST_TIME: '1990-06-01T00:00:00+02:00' }).financeEarliestTime;
    assert.equal(taken.ms, Date.UTC(1990, 4, 31, 22));
    for (const [bad, why] of [
      ['2000-01-01', /must be an ISO 8601 time with Z or an offset/],
      ['2000-02-30T00:00:00Z', /must be a date and time that exists/],
      ['2999-01-01T00:00:00Z', /must not be after the current time/],
    ] as const) {
      assert.throws(
        () => loadConfig({ FINANCE_EARLIEST_TIME: bad }),
        new RegExp(`FINANCE_EARLIEST_TIME=.*${why.source}`),
        bad,
      );
    }
  });

  // A model named twice kept the last version given, with nothing said: the operator may not be trying the version
  // they meant to. It stops the boot naming the model and both versions.
  it('FINANCE_SHADOW_MODELS: one challenger per model; a model named twice is refused naming it', () => {
    assert.equal(
      loadConfig({ FINANCE_SHADOW_MODELS: 'card-fraud=2,credit-default=3' }).FINANCE_SHADOW_MODELS,
      'card-fraud=2,credit-default=3',
    );
    for (const [list, named] of [
      ['card-fraud=2,card-fraud=3', 'card-fraud twice (card-fraud=2, card-fraud=3)'],
      ['card-fraud=2,credit-default=1,card-fraud=2', 'card-fraud twice (card-fraud=2, card-fraud=2)'],
    ] as const) {
      assert.throws(
        () => loadConfig({ FINANCE_SHADOW_MODELS: list }),
        (error: unknown) =>
          error instanceof ConfigError &&
          error.message ===
            `invalid configuration: FINANCE_SHADOW_MODELS=${JSON.stringify(list)}: FINANCE_SHADOW_MODELS names ${named}: a model runs one challenger in shadow`,
        list,
      );
    }
    // A list the pattern refuses is told only that.
    assert.throws(
      () => loadConfig({ FINANCE_SHADOW_MODELS: 'card-fraud,card-fraud' }),
      /FINANCE_SHADOW_MODELS="card-fraud,card-fraud": FINANCE_SHADOW_MODELS must be name=version\[,name=version\.\.\.\]$/,
    );
  });

  it('SPARKPLUG_HOST_ID: unset by default (no STATE); a Sparkplug host id is taken, a topic level or wildcard refused', () => {
    assert.equal(loadConfig({}).SPARKPLUG_HOST_ID, undefined);
    assert.equal(loadConfig({ SPARKPLUG_HOST_ID: 'scada-primary' }).SPARKPLUG_HOST_ID, 'scada-primary');
    for (const bad of ['plant/host', 'host+', '#', 'has space', 'x'.repeat(65)]) {
      assert.throws(() => loadConfig({ SPARKPLUG_HOST_ID: bad }), /SPARKPLUG_HOST_ID=.*must be 1-64 characters/, bad);
    }
  });

  it('CORS_ORIGINS: unset by default (no CORS); exact origins taken, anything a browser would not send as Origin refused naming the item', () => {
    assert.equal(loadConfig({}).CORS_ORIGINS, undefined);
    assert.equal(loadConfig({}).CORS_MAX_AGE_S, 600);
    const config = loadConfig({
      CORS_ORIGINS: 'https://viewer.hospital.example, http://localhost:3000,https://[::1]:8443',
      CORS_MAX_AGE_S: '0',
    });
    assert.deepEqual(config.CORS_ORIGINS, [
      'https://viewer.hospital.example',
      'http://localhost:3000',
      'https://[::1]:8443',
    ]);
    assert.equal(config.CORS_MAX_AGE_S, 0);
    for (const [bad, why] of [
      ['viewer.example', /item 1 \("viewer\.example"\) is not an origin: scheme:\/\/host\[:port\]/],
      ['https://ok.example,https://viewer.example/app', /item 2 \("https:\/\/viewer\.example\/app"\) has a path/],
      ['https://viewer.example?x=1', /has a path, query, fragment or user/],
      ['https://user@viewer.example', /has a path, query, fragment or user/],
      ['https://viewer.example/', /must be written as a browser sends it: https:\/\/viewer\.example$/],
      ['https://Viewer.Example:443', /must be written as a browser sends it: https:\/\/viewer\.example$/],
      ['ftp://files.example', /must be an http:\/\/ or https:\/\/ origin/],
      ['localhost:3000', /must be an http:\/\/ or https:\/\/ origin/],
      ['*', /item 1 is \*: list each origin allowed/],
      ['https://a.example,,https://b.example', /item 2 is empty/],
    ] as const) {
      assert.throws(
        () => loadConfig({ CORS_ORIGINS: bad }),
        (error: unknown) =>
          error instanceof ConfigError &&
          /CORS_ORIGINS=.*: CORS_ORIGINS /.test(error.message) &&
          why.test(error.message),
        bad,
      );
    }
    assert.throws(() => loadConfig({ CORS_MAX_AGE_S: '86401' }), /CORS_MAX_AGE_S/);
  });
});
