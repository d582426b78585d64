import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Notice } from '../../src/database/notification-listener';
import {
  AlarmNotifications,
  alarmNotificationsAfter,
} from '../../src/domains/manufacturing/records/plant-records.repository';

describe("the alarm listener's state, as /health/ready details it (alarm-notifications)", () => {
  const after = (notices: Notice[]): AlarmNotifications[] => {
    let state: AlarmNotifications = 'not-listening';
    return notices.map((notice) => (state = alarmNotificationsAfter(state, notice)));
  };

  it('is not-listening from a drop until it listens again, whatever it said before', () => {
    assert.deepEqual(
      after([
        { kind: 'listening' },
        { kind: 'heard' },
        { kind: 'notified', payload: 'x' },
        { kind: 'dropped' },
        { kind: 'listening' },
        { kind: 'unheard' },
        { kind: 'dropped' },
        { kind: 'listening' },
      ]),
      ['checking', 'delivered', 'delivered', 'not-listening', 'checking', 'not-delivered', 'not-listening', 'checking'],
    );
  });
});
