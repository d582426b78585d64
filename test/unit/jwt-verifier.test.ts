import assert from 'node:assert/strict';
import { createHmac, createSign, generateKeyPairSync, KeyObject } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Logger } from '@nestjs/common';
import jwt from 'jsonwebtoken';
import { JwtVerifier, TokenRejected } from '../../src/auth/jwt-verifier';
import { KeyConfigError, KeyStore } from '../../src/auth/key-store';
import { loadConfig } from '../../src/config/app-config';

const dir = mkdtempSync(join(tmpdir(), 'jwt-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const ISS = 'https://idp.bank.example';
const AUD = 'inference-gateway';
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const rsaPem = rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString();
const rsaFile = join(dir, 'bank-rsa.pem');
writeFileSync(rsaFile, rsaPem);
const HS_SECRET = 'a-shared-secret-that-is-long-enough-0123456789';

function verifier(env: Record<string, string> = {}): JwtVerifier {
  const config = loadConfig({
    NODE_ENV: 'production',
    AUTH_PUBLIC_KEYS: `rsa-1=${rsaFile}`,
    AUTH_ISSUER: ISS,
    AUTH_AUDIENCE: AUD,
    AUTH_CLOCK_SKEW_S: '30',
    DATA_DIR: dir,
    ...env,
  });
  return new JwtVerifier(config, new KeyStore(config));
}

const now = (): number => Math.floor(Date.now() / 1000);
const claims = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  sub: 'risk-engine-7',
  iss: ISS,
  aud: AUD,
  exp: now() + 300,
  roles: ['risk-engine'],
  ...extra,
});
const rs256 = (payload = claims(), kid = 'rsa-1'): string =>
  jwt.sign(payload, rsa.privateKey, { algorithm: 'RS256', keyid: kid });

const b64 = (value: object): string => Buffer.from(JSON.stringify(value)).toString('base64url');
/** A token whose signature is an HMAC under `secret`, whatever the secret is. */
function hmacToken(header: object, payload: object, secret: string | Buffer): string {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${createHmac('sha256', secret).update(input).digest('base64url')}`;
}

function refused(v: JwtVerifier, token: string, reason: RegExp): void {
  assert.throws(
    () => v.verify(token),
    (error: unknown) => error instanceof TokenRejected && reason.test(error.message),
  );
}

describe('JWT verification', () => {
  it('accepts a valid RS256 token and maps its roles to permissions', () => {
    const principal = verifier().verify(rs256(claims({ tenant: 'bank-a', roles: ['risk-engine', 'auditor'] })));
    assert.equal(principal.subject, 'risk-engine-7');
    assert.equal(principal.tenant, 'bank-a');
    assert.deepEqual([...principal.permissions].sort(), ['audit:read', 'finance:score', 'models:read']);
  });

  it('says until when the token is accepted: its exp plus the clock skew, in ms, from the cache too', () => {
    const v = verifier();
    const exp = now() + 300;
    const token = rs256(claims({ exp }));
    assert.equal(v.verify(token).validUntil, (exp + 30) * 1000);
    assert.equal(v.verify(token).validUntil, (exp + 30) * 1000);
  });

  it('refuses a token whose payload is not JSON as malformed (jws throws for these when typ is JWT)', () => {
    const notJson = Buffer.from('xx').toString('base64url');
    for (const typ of ['JWT', undefined]) {
      refused(verifier(), `${b64({ alg: 'RS256', typ })}.${notJson}.x`, /^malformed token$/);
    }
    refused(verifier(), 'a.b.c', /^malformed token$/);
  });

  it('refuses a signed claims set that is not a JSON object as malformed, not for the audience it lacks', () => {
    for (const payload of ['[1,2]', `[{"sub":"s","iss":"${ISS}","aud":"${AUD}","exp":${now() + 300}}]`, '7', 'null']) {
      const token = `${b64({ alg: 'RS256', typ: 'JWT', kid: 'rsa-1' })}.${Buffer.from(payload).toString('base64url')}`;
      const signature = createSign('RSA-SHA256').update(token).sign(rsa.privateKey, 'base64url');
      refused(verifier(), `${token}.${signature}`, /^malformed token$/);
    }
  });

  it('refuses a header with crit: no extension is understood (RFC 7515 4.1.11)', () => {
    for (const crit of [['exp'], ['b64'], []]) {
      const token = jwt.sign(claims(), rsa.privateKey, {
        algorithm: 'RS256',
        keyid: 'rsa-1',
        header: { alg: 'RS256', crit },
      });
      refused(verifier(), token, /^token header crit not supported$/);
    }
  });

  it('refuses alg none', () => {
    const token = `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims())}.`;
    refused(verifier(), token, /^token algorithm not allowed$/);
  });

  it('refuses an algorithm other than the pinned ones', () => {
    const token = jwt.sign(claims(), rsa.privateKey, { algorithm: 'RS384', keyid: 'rsa-1' });
    refused(verifier(), token, /^token algorithm not allowed$/);
    // ES256 is pinned by default; pinning RS256 alone refuses it.
    const es = jwt.sign(claims(), ec.privateKey, { algorithm: 'ES256', keyid: 'rsa-1' });
    refused(verifier({ AUTH_ALGORITHMS: 'RS256' }), es, /^token algorithm not allowed$/);
  });

  it('refuses HS256 unless it is enabled', () => {
    refused(verifier(), hmacToken({ alg: 'HS256', kid: 'rsa-1' }, claims(), HS_SECRET), /not allowed/);
  });

  it('refuses a token signed with the public key as an HMAC secret, even with HS256 enabled', () => {
    const v = verifier({ AUTH_ALGORITHMS: 'RS256,HS256', AUTH_HS256_SECRET: HS_SECRET });
    refused(v, hmacToken({ alg: 'HS256', kid: 'rsa-1' }, claims(), rsaPem), /^invalid signature$/);
    // The real secret works.
    assert.equal(v.verify(hmacToken({ alg: 'HS256' }, claims(), HS_SECRET)).subject, 'risk-engine-7');
  });

  it('refuses an unknown kid', () => {
    refused(verifier(), rs256(claims(), 'rsa-9'), /^unknown key id$/);
  });

  it('refuses a forged signature', () => {
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 });
    refused(
      verifier(),
      jwt.sign(claims(), other.privateKey, { algorithm: 'RS256', keyid: 'rsa-1' }),
      /^invalid signature$/,
    );
  });

  it('refuses expired tokens, honouring the clock skew', () => {
    refused(verifier(), rs256(claims({ exp: now() - 60 })), /^token expired$/);
    assert.ok(verifier().verify(rs256(claims({ exp: now() - 10 }))));
  });

  it('a token verified once (cached) is still refused once it expires', () => {
    const v = verifier();
    const token = rs256(claims({ exp: now() + 5 }));
    assert.equal(v.verify(token).subject, 'risk-engine-7');
    assert.equal(v.verify(token).subject, 'risk-engine-7');
    const realNow = Date.now;
    Date.now = () => realNow() + 40_000; // past exp + 30 s of skew
    try {
      refused(v, token, /^token expired$/);
    } finally {
      Date.now = realNow;
    }
  });

  it('refuses tokens not yet valid (nbf), honouring the clock skew', () => {
    refused(verifier(), rs256(claims({ nbf: now() + 120 })), /^token not yet valid$/);
    assert.ok(verifier().verify(rs256(claims({ nbf: now() + 10 }))));
  });

  it('refuses an exp or nbf that JSON reads as infinite (1e999): the token would never expire', () => {
    const text = (extra: string): string =>
      `{"sub":"risk-engine-7","iss":"${ISS}","aud":"${AUD}","roles":["risk-engine"],${extra}}`;
    const signed = (payload: string): string =>
      jwt.sign(payload, rsa.privateKey, { algorithm: 'RS256', keyid: 'rsa-1' });
    refused(verifier(), signed(text('"exp":1e999')), /^token exp malformed$/);
    refused(verifier(), signed(text(`"exp":${now() + 300},"nbf":-1e999`)), /^token nbf malformed$/);
    assert.ok(verifier().verify(signed(text(`"exp":${now() + 300},"nbf":${now() - 10}`))));
  });

  it('names the claim or part it cannot read: an exp or nbf that is no number, no signature', () => {
    const text = (extra: string): string =>
      `{"sub":"risk-engine-7","iss":"${ISS}","aud":"${AUD}","roles":["risk-engine"],${extra}}`;
    const signed = (payload: string): string =>
      jwt.sign(payload, rsa.privateKey, { algorithm: 'RS256', keyid: 'rsa-1' });
    for (const exp of ['"9999999999"', 'null', 'true', '[1]']) {
      refused(verifier(), signed(text(`"exp":${exp}`)), /^token exp malformed$/);
    }
    for (const nbf of ['"1"', 'null', '{}']) {
      refused(verifier(), signed(text(`"exp":${now() + 300},"nbf":${nbf}`)), /^token nbf malformed$/);
    }
    const [header, body] = signed(text(`"exp":${now() + 300}`)).split('.');
    refused(verifier(), `${header}.${body}.`, /^token has no signature$/);
  });

  it('refuses a token whose claims set or header names a member twice (RFC 7519 4 lets a verifier)', () => {
    const claimsText = (extra: string): string =>
      `{"sub":"risk-engine-7","iss":"${ISS}","aud":"${AUD}","exp":${now() + 300},"roles":["risk-engine"],${extra}}`;
    const signed = (payload: string): string =>
      jwt.sign(payload, rsa.privateKey, { algorithm: 'RS256', keyid: 'rsa-1' });
    // JSON.parse keeps the last: tenant t2, where a proxy keeping the first saw t1.
    refused(verifier(), signed(claimsText('"tenant":"t1","tenant":"t2"')), /^token names a claim twice$/);
    refused(verifier(), signed(claimsText('"org":{"id":1,"id":2}')), /^token names a claim twice$/);
    // The header too, signed as sent: {"alg":"RS256","kid":"rsa-1","kid":"rsa-1"}.
    const header = Buffer.from('{"alg":"RS256","kid":"rsa-1","kid":"rsa-1","typ":"JWT"}').toString('base64url');
    const body = Buffer.from(claimsText('"tenant":"t1"')).toString('base64url');
    const signature = createSign('RSA-SHA256').update(`${header}.${body}`).sign(rsa.privateKey, 'base64url');
    refused(verifier(), `${header}.${body}.${signature}`, /^token names a claim twice$/);
    // A name inside a string value is no member name.
    assert.equal(verifier().verify(signed(claimsText('"tenant":"t1","note":"\\"tenant\\":"'))).tenant, 't1');
  });

  it('reads a key file whose path holds =, after a kid', () => {
    const equalsFile = join(dir, 'bank=rsa=.pem');
    writeFileSync(equalsFile, rsaPem);
    const v = verifier({ AUTH_PUBLIC_KEYS: `rsa-eq=${equalsFile}` });
    assert.equal(v.verify(rs256(claims(), 'rsa-eq')).subject, 'risk-engine-7');
  });

  it('requires iss, aud, exp and sub', () => {
    const { iss: _i, ...noIss } = claims();
    const { aud: _a, ...noAud } = claims();
    const { exp: _e, ...noExp } = claims();
    const { sub: _s, ...noSub } = claims();
    refused(verifier(), rs256(noIss), /^token issuer not accepted$/);
    refused(verifier(), rs256(claims({ iss: 'https://evil.example' })), /^token issuer not accepted$/);
    refused(verifier(), rs256(noAud), /^token audience not accepted$/);
    refused(verifier(), rs256(noExp), /^token has no exp$/);
    refused(verifier(), rs256(noSub), /^token has no sub$/);
  });

  it('refuses a tenant claim that is present but not a usable tenant, rather than reading it as no tenant', () => {
    // A lone surrogate too: stored as U+FFFD, 'bank-\ud800' and 'bank-\udc00' would be one tenant with 'bank-\ufffd'.
    const lone = ['bank-\ud800', 'bank-\udc00a', '\ude00bank'];
    for (const tenant of [
      42,
      ['bank-a'],
      '',
      null,
      { id: 'bank-a' },
      'bank\u0000a',
      'bank\na',
      'b'.repeat(257),
      ...lone,
    ]) {
      refused(verifier(), rs256(claims({ tenant })), /^token tenant claim malformed$/);
    }
    assert.equal(verifier().verify(rs256(claims({ tenant: 'b'.repeat(256) }))).tenant, 'b'.repeat(256));
    // A surrogate pair is a character like any other.
    assert.equal(verifier().verify(rs256(claims({ tenant: 'bank-\ud83c\udfe6' }))).tenant, 'bank-🏦');
    assert.equal(verifier().verify(rs256(claims())).tenant, undefined);
  });

  it('refuses a tenant claim with white space or an invisible character at an end, which reads as another tenant', () => {
    for (const tenant of [' ', '   ', 'bank-a ', ' bank-a', 'bank-a\u00a0', 'bank-a\u200b', '\ufeffbank-a', '\u3000']) {
      refused(
        verifier(),
        rs256(claims({ tenant })),
        /^token tenant claim starts or ends with white space or an invisible character$/,
      );
    }
    assert.equal(verifier().verify(rs256(claims({ tenant: 'bank a' }))).tenant, 'bank a');
  });

  it('refuses a tenant claim not in NFC, so that one name spelt two ways is not two tenants', () => {
    // é as e and U+0301 (NFD), Å as the angstrom sign U+212B, and a Hangul syllable as its jamo: each has an NFC form.
    for (const tenant of ['cafe\u0301', 'bank-\u212b', '\u1100\u1161']) {
      refused(
        verifier(),
        rs256(claims({ tenant })),
        /^token tenant claim not in Unicode normalization form C \(NFC\)$/,
      );
    }
    assert.equal(verifier().verify(rs256(claims({ tenant: 'caf\u00e9' }))).tenant, 'café');
    assert.equal(verifier().verify(rs256(claims({ tenant: '\uac00' }))).tenant, '가');
  });

  it('refuses a sub the audit trail could not record as it is (over 256 characters, control characters)', () => {
    for (const sub of ['s'.repeat(257), 'risk\u0000engine', 'risk\u007fengine']) {
      refused(verifier(), rs256(claims({ sub })), /^token sub claim malformed$/);
    }
    assert.equal(verifier().verify(rs256(claims({ sub: 's'.repeat(256) }))).subject, 's'.repeat(256));
  });

  it('gives the roles each once, those the gateway knows first', () => {
    const principal = verifier().verify(
      rs256(claims({ roles: ['group-b', 'auditor', 'group-a', 'group-b', 'auditor'] })),
    );
    assert.deepEqual(principal.roles, ['auditor', 'group-b', 'group-a']);
    assert.deepEqual(verifier().verify(rs256(claims({ roles: 'x risk-engine x' }))).roles, ['risk-engine', 'x']);
  });

  it('reads roles from a configurable, nested claim', () => {
    const v = verifier({ AUTH_ROLES_CLAIM: 'realm_access.roles' });
    const principal = v.verify(rs256(claims({ roles: undefined, realm_access: { roles: ['auditor'] } })));
    assert.deepEqual([...principal.permissions].sort(), ['audit:read', 'models:read']);
  });

  it('reads a claim whose name has dots (a URI, RFC 7519 4.2) by its whole name, before any nested path', () => {
    const v = verifier({
      AUTH_TENANT_CLAIM: 'https://bank.example/tenant',
      AUTH_ROLES_CLAIM: 'https://bank.example/roles',
    });
    const principal = v.verify(
      rs256(
        claims({
          roles: undefined,
          'https://bank.example/tenant': 'bank-a',
          'https://bank.example/roles': ['auditor'],
        }),
      ),
    );
    assert.equal(principal.tenant, 'bank-a');
    assert.deepEqual([...principal.permissions].sort(), ['audit:read', 'models:read']);
    // Present but unusable is still refused, not read as no tenant.
    refused(v, rs256(claims({ 'https://bank.example/tenant': 42 })), /^token tenant claim malformed$/);
    // A literal member wins over the nested path of the same spelling; the path is read without one.
    const nested = verifier({ AUTH_TENANT_CLAIM: 'org.tenant', AUTH_ROLES_CLAIM: 'realm_access.roles' });
    const both = claims({ 'org.tenant': 'bank-a', org: { tenant: 'bank-b' } });
    assert.equal(nested.verify(rs256(both)).tenant, 'bank-a');
    // The tenant by its path (no member named org.tenant); the roles by their literal member, not the empty nested list.
    const mixed = nested.verify(
      rs256(claims({ org: { tenant: 'bank-b' }, 'realm_access.roles': ['auditor'], realm_access: { roles: [] } })),
    );
    assert.equal(mixed.tenant, 'bank-b');
    assert.ok(mixed.permissions.has('audit:read'));
  });

  it('rotates keys from a JWKS file without a restart', () => {
    const jwks = join(dir, 'jwks.json');
    const k1 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const k2 = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = (k: typeof k1, kid: string): object => ({ ...k.publicKey.export({ format: 'jwk' }), kid, use: 'sig' });
    writeFileSync(jwks, JSON.stringify({ keys: [jwk(k1, 'k1')] }));
    const v = verifier({ AUTH_PUBLIC_KEYS: '', AUTH_JWKS_FILE: jwks });
    const es = (k: typeof k1, kid: string): string =>
      jwt.sign(claims(), k.privateKey, { algorithm: 'ES256', keyid: kid });
    assert.ok(v.verify(es(k1, 'k1')));
    refused(v, es(k2, 'k2'), /^unknown key id$/);

    writeFileSync(jwks, JSON.stringify({ keys: [jwk(k2, 'k2')] }));
    const later = new Date(Date.now() + 5000);
    utimesSync(jwks, later, later);
    // The file is re-checked at most once a second.
    const realNow = Date.now;
    Date.now = () => realNow() + 2000;
    try {
      assert.ok(v.verify(es(k2, 'k2')));
      refused(v, es(k1, 'k1'), /^unknown key id$/);
    } finally {
      Date.now = realNow;
    }
  });

  describe('a JWKS member the gateway cannot use is skipped, not the set (RFC 7517 5)', () => {
    const warned: Array<Record<string, unknown>> = [];
    before(() => {
      Logger.overrideLogger({
        log: () => undefined,
        error: () => undefined,
        warn: (message: unknown) => warned.push(message as Record<string, unknown>),
      });
    });
    after(() => {
      Logger.overrideLogger(false);
    });

    const good = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const rsaGood = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pss = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwkOf = (k: KeyObject, extra: Record<string, unknown>): Record<string, unknown> => ({
      ...k.export({ format: 'jwk' }),
      ...extra,
    });
    const unusable = [
      jwkOf(generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey, { kid: 'enc', use: 'enc' }),
      jwkOf(generateKeyPairSync('ed25519').publicKey, { kid: 'ed' }),
      jwkOf(generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey, { kid: 'p384', alg: 'ES384' }),
      jwkOf(pss.publicKey, { kid: 'pss', alg: 'PS256' }),
      jwkOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey, { kid: 'wrap', key_ops: ['wrapKey'] }),
      jwkOf(generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey, { kid: 'short' }),
      { kty: 'XYZ', kid: 'odd-kty' },
      { kty: 'EC', kid: 42 },
      'not a key',
    ];
    const file = (name: string, keys: unknown[]): string => {
      const path = join(dir, name);
      writeFileSync(path, JSON.stringify({ keys }));
      return path;
    };
    const es = (kid: string | undefined, key = good.privateKey): string =>
      jwt.sign(claims(), key, { algorithm: 'ES256', ...(kid === undefined ? {} : { keyid: kid }) });
    const rs = (kid: string, key = rsaGood.privateKey): string =>
      jwt.sign(claims(), key, { algorithm: 'RS256', keyid: kid });

    it('at boot: the usable keys verify, each skipped member is named once in a warning with why', () => {
      warned.length = 0;
      const jwks = file('mixed-jwks.json', [
        ...unusable,
        jwkOf(good.publicKey, { kid: 'es-ok', use: 'sig', alg: 'ES256', key_ops: ['verify'] }),
        jwkOf(rsaGood.publicKey, { kid: 'rs-ok', alg: 'RS256' }),
      ]);
      const v = verifier({ AUTH_PUBLIC_KEYS: '', AUTH_JWKS_FILE: jwks });
      assert.ok(v.verify(es('es-ok')));
      assert.ok(v.verify(rs('rs-ok')));
      // RFC 7517 4.4, RFC 8725 3.1: a key published for PS256 does not verify RS256.
      refused(v, rs('pss', pss.privateKey), /^unknown key id$/);
      const skipped = warned.filter((w) => w.msg === 'JWKS key skipped');
      assert.deepEqual(
        skipped.map((w) => [w.key, w.kid]),
        unusable.map((jwk, i) => [
          `keys[${i}]`,
          typeof jwk === 'object' && typeof jwk.kid === 'string' ? jwk.kid : undefined,
        ]),
      );
      const reasons = skipped.map((w) => String(w.reason));
      assert.match(reasons[0], /^use "enc" is not "sig"$/);
      assert.match(reasons[1], /only RSA \(RS256\) and EC P-256 \(ES256\)/);
      assert.match(reasons[2], /only RSA \(RS256\) and EC P-256 \(ES256\)/);
      assert.match(reasons[3], /^alg "PS256" is not RS256/);
      assert.match(reasons[4], /^key_ops \["wrapKey"\] does not include "verify"$/);
      assert.match(reasons[5], /^RSA key under 2048 bits$/);
      assert.match(reasons[6], /^not a public key/);
      assert.match(reasons[7], /^kid is not a non-empty string$/);
      assert.match(reasons[8], /^not a JSON object$/);
    });

    it('at runtime: a reload with an unusable member still retires the old key and brings in the new one', () => {
      const jwks = file('rotate-jwks.json', [jwkOf(good.publicKey, { kid: 'old' })]);
      const v = verifier({ AUTH_PUBLIC_KEYS: '', AUTH_JWKS_FILE: jwks });
      assert.ok(v.verify(es('old')));
      const next = generateKeyPairSync('ec', { namedCurve: 'P-256' });
      file('rotate-jwks.json', [unusable[0], unusable[1], jwkOf(next.publicKey, { kid: 'new' })]);
      const later = new Date(Date.now() + 5000);
      utimesSync(jwks, later, later);
      const realNow = Date.now;
      Date.now = () => realNow() + 2000;
      try {
        assert.ok(v.verify(es('new', next.privateKey)));
        refused(v, es('old'), /^unknown key id$/);
      } finally {
        Date.now = realNow;
      }
    });

    it('a member without kid verifies a token without kid when it is the only key of its algorithm', () => {
      const v = verifier({
        AUTH_PUBLIC_KEYS: '',
        AUTH_JWKS_FILE: file('nokid-jwks.json', [jwkOf(good.publicKey, {})]),
      });
      assert.ok(v.verify(es(undefined)));
      refused(v, es('some-kid'), /^unknown key id$/);
      const two = file('nokid-two-jwks.json', [
        jwkOf(good.publicKey, {}),
        jwkOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey, { kid: 'other' }),
      ]);
      refused(verifier({ AUTH_PUBLIC_KEYS: '', AUTH_JWKS_FILE: two }), es(undefined), /^token has no kid$/);
    });

    it('a set with no usable member refuses every token, and in production with no other key stops the boot naming why', () => {
      const jwks = file('none-usable-jwks.json', unusable.slice(0, 2));
      const withPem = verifier({ AUTH_JWKS_FILE: jwks });
      refused(withPem, rs('enc'), /^unknown key id$/);
      assert.ok(withPem.verify(rs256()));
      assert.throws(
        () => verifier({ AUTH_PUBLIC_KEYS: '', AUTH_JWKS_FILE: jwks }),
        (error: unknown) =>
          error instanceof KeyConfigError &&
          error.message ===
            `AUTH_JWKS_FILE ${jwks}: no key the gateway can use (keys[0] (kid enc): use "enc" is not "sig"; ` +
              'keys[1] (kid ed): only RSA (RS256) and EC P-256 (ES256) public keys are supported)',
      );
    });

    it('outside production, a set with no usable member refuses every token too: the development key pair never stands in', () => {
      const jwks = file('none-usable-dev-jwks.json', unusable.slice(0, 2));
      const devDir = mkdtempSync(join(tmpdir(), 'jwt-dev-'));
      try {
        const v = verifier({ NODE_ENV: 'development', AUTH_PUBLIC_KEYS: '', AUTH_JWKS_FILE: jwks, DATA_DIR: devDir });
        assert.equal(existsSync(join(devDir, 'dev-keys')), false, 'no development key pair made');
        refused(v, rs('enc'), /^unknown key id$/);
        refused(v, es(undefined), /^(unknown key id|token has no kid)$/);
        // The set gains a usable key: its tokens verify, with no restart.
        writeFileSync(jwks, JSON.stringify({ keys: [jwkOf(good.publicKey, { kid: 'now-usable' })] }));
        const realNow = Date.now;
        Date.now = () => realNow() + 5_000;
        try {
          assert.ok(v.verify(es('now-usable')));
        } finally {
          Date.now = realNow;
        }
      } finally {
        rmSync(devDir, { recursive: true, force: true });
      }
    });

    it('a malformed file or one with a private member is still refused whole: at boot it stops, at runtime the previous keys stay', () => {
      const jwks = file('bad-jwks.json', [jwkOf(good.publicKey, { kid: 'kept' })]);
      const v = verifier({ AUTH_PUBLIC_KEYS: '', AUTH_JWKS_FILE: jwks });
      const realNow = Date.now;
      let ahead = 0;
      Date.now = () => realNow() + ahead;
      try {
        for (const [i, content] of [
          '{"keys": [',
          '{"no": "keys"}',
          'null',
          JSON.stringify({ keys: [unusable[0], { ...good.privateKey.export({ format: 'jwk' }), kid: 'signing' }] }),
        ].entries()) {
          writeFileSync(jwks, content);
          const later = new Date(realNow() + 5000 * (i + 1));
          utimesSync(jwks, later, later);
          ahead += 2000;
          assert.ok(v.verify(es('kept')), content);
        }
      } finally {
        Date.now = realNow;
      }
      assert.throws(
        () => verifier({ AUTH_PUBLIC_KEYS: '', AUTH_JWKS_FILE: jwks }),
        (error: unknown) => error instanceof KeyConfigError && /keys\[1\] is a private key:/.test(error.message),
      );
    });
  });

  describe('a JWKS that gives one kid to several keys (RFC 7517 4.5 asks for distinct kids)', () => {
    const warned: Array<Record<string, unknown>> = [];
    before(() => {
      Logger.overrideLogger({
        log: () => undefined,
        error: () => undefined,
        warn: (message: unknown) => warned.push(message as Record<string, unknown>),
      });
    });
    after(() => {
      Logger.overrideLogger(false);
    });
    const shared = (): Array<Record<string, unknown>> =>
      warned.filter((w) => /several keys with one kid/.test(String(w.msg)));

    const oldKey = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const newKey = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const ecKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwkOf = (k: KeyObject, kid: string): Record<string, unknown> => ({ ...k.export({ format: 'jwk' }), kid });
    const file = (name: string, keys: unknown[]): string => {
      const path = join(dir, name);
      writeFileSync(path, JSON.stringify({ keys }));
      return path;
    };
    const signed = (key: KeyObject, payload = claims(), algorithm: jwt.Algorithm = 'RS256', kid = 'rot'): string =>
      jwt.sign(payload, key, { algorithm, keyid: kid });

    it('a token signed by any of the keys verifies; the kid is named in one warning per load, no key material', () => {
      warned.length = 0;
      const jwks = file('rotating-jwks.json', [jwkOf(oldKey.publicKey, 'rot'), jwkOf(newKey.publicKey, 'rot')]);
      const v = verifier({ AUTH_PUBLIC_KEYS: '', AUTH_JWKS_FILE: jwks });
      assert.equal(v.verify(signed(oldKey.privateKey)).subject, 'risk-engine-7');
      assert.equal(v.verify(signed(newKey.privateKey)).subject, 'risk-engine-7');
      assert.equal(v.verify(signed(newKey.privateKey, claims({ sub: 'second' }))).subject, 'second');
      assert.equal(shared().length, 1);
      assert.equal(shared()[0].kid, 'rot');
      assert.deepEqual(shared()[0].keys, ['keys[0]', 'keys[1]']);
      const logged = JSON.stringify(shared()[0]);
      for (const k of [oldKey, newKey]) assert.ok(!logged.includes(String(k.publicKey.export({ format: 'jwk' }).n)));

      // Refusals read as before: no key verifies a forgery; a claim is refused by the key whose signature verifies.
      const forger = generateKeyPairSync('rsa', { modulusLength: 2048 });
      refused(v, signed(forger.privateKey), /^invalid signature$/);
      refused(v, signed(newKey.privateKey, claims({ exp: now() - 60 })), /^token expired$/);
      refused(v, signed(newKey.privateKey, claims({ aud: 'elsewhere' })), /^token audience not accepted$/);
      refused(v, signed(newKey.privateKey, claims(), 'RS256', 'other'), /^unknown key id$/);

      // Re-read on change: warned again for the new load, not for each token in between.
      file('rotating-jwks.json', [jwkOf(newKey.publicKey, 'rot'), jwkOf(oldKey.publicKey, 'rot')]);
      const later = new Date(Date.now() + 5000);
      utimesSync(jwks, later, later);
      const realNow = Date.now;
      Date.now = () => realNow() + 2000;
      try {
        assert.ok(v.verify(signed(oldKey.privateKey, claims({ sub: 'third' }))));
      } finally {
        Date.now = realNow;
      }
      assert.equal(shared().length, 2);
    });

    it('an RSA and an EC key under one kid each verify their own algorithm, and the kid is named', () => {
      warned.length = 0;
      const jwks = file('mixed-kid-jwks.json', [jwkOf(ecKey.publicKey, 'rot'), jwkOf(newKey.publicKey, 'rot')]);
      const v = verifier({ AUTH_PUBLIC_KEYS: '', AUTH_JWKS_FILE: jwks });
      assert.ok(v.verify(signed(newKey.privateKey)));
      assert.ok(v.verify(signed(ecKey.privateKey, claims(), 'ES256')));
      refused(v, signed(oldKey.privateKey), /^invalid signature$/);
      assert.deepEqual(
        shared().map((w) => w.kid),
        ['rot'],
      );
    });

    it('a JWKS member with the kid of an AUTH_PUBLIC_KEYS key is tried too, and named', () => {
      warned.length = 0;
      const jwks = file('pem-kid-jwks.json', [jwkOf(newKey.publicKey, 'rsa-1')]);
      const v = verifier({ AUTH_JWKS_FILE: jwks });
      assert.ok(v.verify(rs256()));
      assert.ok(v.verify(signed(newKey.privateKey, claims(), 'RS256', 'rsa-1')));
      assert.deepEqual(shared()[0].keys, ['AUTH_PUBLIC_KEYS', 'keys[0]']);
    });
  });

  it('in production, no key configuration stops the boot', () => {
    assert.throws(
      () => new KeyStore(loadConfig({ NODE_ENV: 'production', DATA_DIR: dir })),
      (error: unknown) => error instanceof KeyConfigError && /AUTH_PUBLIC_KEYS or AUTH_JWKS_FILE/.test(error.message),
    );
  });

  it('a key file that cannot be read stops the boot naming AUTH_PUBLIC_KEYS and the file', () => {
    assert.throws(
      () => new KeyStore(loadConfig({ AUTH_PUBLIC_KEYS: `k1=${join(dir, 'missing.pem')}`, DATA_DIR: dir })),
      (error: unknown) =>
        error instanceof KeyConfigError &&
        /^AUTH_PUBLIC_KEYS: cannot read .*missing\.pem \(ENOENT\)$/.test(error.message),
    );
  });

  it('a private key given as a public one stops the boot: the gateway must not hold a signing key', () => {
    const privateFile = join(dir, 'signing-key.pem');
    writeFileSync(privateFile, ec.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    assert.throws(
      () => verifier({ AUTH_PUBLIC_KEYS: `es-1=${privateFile}` }),
      (error: unknown) =>
        error instanceof KeyConfigError &&
        error.message.startsWith(`AUTH_PUBLIC_KEYS ${privateFile}: a private key:`) &&
        !error.message.includes('PRIVATE KEY-----'),
    );
    const jwks = join(dir, 'private-jwks.json');
    const privateJwk = { ...ec.privateKey.export({ format: 'jwk' }), kid: 'k1' };
    writeFileSync(jwks, JSON.stringify({ keys: [privateJwk] }));
    assert.throws(
      () => verifier({ AUTH_PUBLIC_KEYS: '', AUTH_JWKS_FILE: jwks }),
      (error: unknown) =>
        error instanceof KeyConfigError &&
        error.message.startsWith(`AUTH_JWKS_FILE ${jwks}: keys[0] is a private key:`) &&
        !error.message.includes(String(privateJwk.d)),
    );
  });

  it('in development, without keys, a dev key pair is generated and trusted', () => {
    const devDir = mkdtempSync(join(dir, 'dev-'));
    const config = loadConfig({ NODE_ENV: 'development', DATA_DIR: devDir });
    const store = new KeyStore(config);
    assert.deepEqual(
      store.candidates('ES256', 'dev').map((k) => k.algorithm),
      ['ES256'],
    );
  });
});
