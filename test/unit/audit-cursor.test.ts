import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { anchorKey } from '../../src/audit/audit-anchor';
import { openTenantCursor, sealTenantCursor, TENANT_CURSOR, tenantCursorKey } from '../../src/audit/audit-cursor';

const secret = Buffer.from('test-audit-secret-0123456789abcdef0123456789');
const key = tenantCursorKey(secret);

describe('audit tenant cursor', () => {
  it('opens to the id it sealed, for the tenant it was sealed for', () => {
    for (const id of ['1', '6629', '9223372036854775807']) {
      const cursor = sealTenantCursor(key, 'bank-a', id);
      assert.match(cursor, TENANT_CURSOR);
      assert.equal(openTenantCursor(key, 'bank-a', cursor), id);
    }
  });

  it('gives nothing for another tenant, another key, an altered cursor or a row id', () => {
    const cursor = sealTenantCursor(key, 'bank-a', '6631');
    assert.equal(openTenantCursor(key, 'bank-b', cursor), undefined);
    assert.equal(openTenantCursor(tenantCursorKey(Buffer.from('another secret')), 'bank-a', cursor), undefined);
    // The anchors' key is derived from the same secret, and opens nothing.
    assert.equal(openTenantCursor(anchorKey(secret), 'bank-a', cursor), undefined);
    for (let at = 0; at < cursor.length; at++) {
      const altered = cursor.slice(0, at) + (cursor[at] === 'A' ? 'B' : 'A') + cursor.slice(at + 1);
      assert.equal(openTenantCursor(key, 'bank-a', altered), undefined, `character ${at}`);
    }
    for (const text of ['6631', '', cursor.slice(1), `${cursor}A`, cursor.replace(/.$/, '=')]) {
      assert.equal(openTenantCursor(key, 'bank-a', text), undefined, text);
    }
  });

  it('seals the same id differently each time', () => {
    assert.notEqual(sealTenantCursor(key, 'bank-a', '42'), sealTenantCursor(key, 'bank-a', '42'));
  });
});
