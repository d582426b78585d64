import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connectAsync, MqttClient } from 'mqtt';
import { REPO_ROOT } from '../fixtures/paths';
import { spawnSparkplugHost } from '../fixtures/sparkplug-host';
import { until } from '../fixtures/until';

/**
 * The gateway as Sparkplug 3.0 Primary Host Application, told by someone else that it is offline: another client
 * publishes a retained `{"online":false,...}` on the gateway's own STATE topic (a stale will, a previous instance's
 * offline) while the gateway is connected. The gateway publishes its birth again at once (retained, QoS 1, the
 * timestamp of its session's birth), so that edge nodes waiting for this host do not stop; it does not answer a
 * payload that is not STATE JSON, nor the offline it publishes itself at a graceful stop.
 */

const MQTT_URL = process.env.MQTT_URL;
const SKIP = !MQTT_URL ? 'MQTT_URL is not set (e.g. MQTT_URL=mqtt://127.0.0.1:1883); .ci/run sets it' : false;

interface Seen {
  body: string;
  retain: boolean;
  qos: number;
}

describe(
  'manufacturing over MQTT: the Sparkplug primary host answers an offline STATE of its own id',
  { skip: SKIP },
  () => {
    const hostId = `gateway-host-offline-${process.pid}-${Date.now()}`;
    const stateTopic = `spBv1.0/STATE/${hostId}`;
    const clientId = `gateway-state-offline-${process.pid}-${Date.now()}`;
    let workDir: string;
    let edge: MqttClient;
    let other: MqttClient;
    const seen: Seen[] = [];
    let child: ChildProcess | undefined;

    /** `online` of a STATE seen; undefined for a body that is not JSON (the test's own bad payloads, a clear). */
    const onlineOf = (body: string): unknown => {
      try {
        return (JSON.parse(body) as { online?: unknown } | null)?.online;
      } catch {
        return undefined;
      }
    };
    const onlines = () => seen.filter((s) => onlineOf(s.body) === true);

    before(async () => {
      workDir = mkdtempSync(join(tmpdir(), 'plant-state-offline-'));
      cpSync(join(REPO_ROOT, 'models', 'manufacturing'), join(workDir, 'models', 'manufacturing'), { recursive: true });
      // The edge node's view (MQTT 5, Retain As Published: the retain flag of live messages shows).
      edge = await connectAsync(MQTT_URL!, {
        clientId: `test-offline-edge-${process.pid}`,
        clean: true,
        protocolVersion: 5,
      });
      edge.on('message', (_topic, body, packet) =>
        seen.push({ body: body.toString('utf8'), retain: packet.retain, qos: packet.qos }),
      );
      await edge.subscribeAsync(stateTopic, { qos: 1, rap: true });
      other = await connectAsync(MQTT_URL!, { clientId: `test-offline-other-${process.pid}`, clean: true });
    });

    after(async () => {
      const gateway = child;
      if (gateway && gateway.exitCode === null && gateway.signalCode === null) {
        const exited = new Promise((resolve) => gateway.once('exit', resolve));
        gateway.kill('SIGKILL');
        await exited;
      }
      if (other) await other.endAsync();
      // Drop the gateway's persistent session. Taken over, a killed gateway's connection has its will published now,
      // before the retained STATE is cleared below rather than after it (which left an offline on the shared broker).
      if (MQTT_URL) await (await connectAsync(MQTT_URL, { clientId, clean: true })).endAsync();
      if (edge) {
        await edge.publishAsync(stateTopic, '', { qos: 1, retain: true });
        await edge.endAsync();
      }
      if (workDir) rmSync(workDir, { recursive: true, force: true });
    });

    it('publishes its birth again once another client says it is offline, and not for other payloads', async () => {
      const port = 3900 + Math.floor(Math.random() * 100);
      child = spawnSparkplugHost({
        workDir,
        dataDir: join(workDir, 'data'),
        mqttUrl: MQTT_URL!,
        clientId,
        hostId,
        port,
      });
      const gateway = child;
      const exited = new Promise<void>((resolve) => gateway.once('exit', () => resolve()));
      const alive = () => {
        if (gateway.exitCode !== null || gateway.signalCode !== null) throw new Error('the gateway exited');
      };

      const birth = await until('STATE online after boot', () => (alive(), onlines()[0]), 60_000);
      const { timestamp } = JSON.parse(birth.body) as { timestamp: number };

      // Not STATE JSON: 2.2's OFFLINE, JSON without a timestamp, an array. None is answered (counted at the end).
      for (const body of ['OFFLINE', '{"online":false}', '[false]']) {
        await other.publishAsync(stateTopic, body, { qos: 1, retain: true });
      }
      // A stale offline, as the will of a connection the broker dropped would be.
      const stale = JSON.stringify({ online: false, timestamp: timestamp - 60_000 });
      await other.publishAsync(stateTopic, stale, { qos: 1, retain: true });
      const staleAt = await until('the stale offline seen', () => {
        const at = seen.findIndex((s) => s.body === stale);
        return at < 0 ? undefined : at;
      });
      const answer = await until(
        'STATE online again after the stale offline',
        () => (alive(), seen.slice(staleAt + 1).find((s) => onlines().includes(s))),
        30_000,
      );
      assert.deepEqual(
        { ...answer, body: JSON.parse(answer.body) as unknown },
        { body: { online: true, timestamp }, retain: true, qos: 1 },
        "the birth again: retained, QoS 1, the session's birth timestamp",
      );

      // What an edge node connecting now reads: online.
      const late = await connectAsync(MQTT_URL!, { clientId: `test-offline-late-${process.pid}`, clean: true });
      try {
        const got = new Promise<string>((resolve) => late.on('message', (_t, body) => resolve(body.toString('utf8'))));
        await late.subscribeAsync(stateTopic, { qos: 1 });
        assert.deepEqual(JSON.parse(await got), { online: true, timestamp });
      } finally {
        await late.endAsync();
      }

      // Its own offline at a graceful stop is not answered; by its exit, all it published has been seen.
      gateway.kill('SIGTERM');
      await exited;
      assert.equal(gateway.exitCode, 0);
      const last = await until('the offline of the graceful stop', () => {
        const body = seen.at(-1)?.body;
        return body !== undefined && onlineOf(body) === false && body !== stale ? body : undefined;
      });
      assert.ok((JSON.parse(last) as { timestamp: number }).timestamp >= timestamp);
      assert.equal(onlines().length, 2, `one birth and one answer: ${JSON.stringify(seen.map((s) => s.body))}`);
    });
  },
);
