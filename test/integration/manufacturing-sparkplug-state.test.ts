import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connectAsync, IPublishPacket, MqttClient } from 'mqtt';
import { REPO_ROOT } from '../fixtures/paths';
import { spawnSparkplugHost } from '../fixtures/sparkplug-host';
import { until } from '../fixtures/until';

/**
 * The gateway as a Sparkplug 3.0 Primary Host Application (SPARKPLUG_HOST_ID set), seen from an edge node's
 * side of Mosquitto: its STATE goes online (retained, QoS 1) once it is subscribed, offline when it stops
 * gracefully, and offline by its MQTT will, stamped as its birth was, when its process is killed (SIGKILL:
 * no shutdown hook runs, the broker sees the connection drop).
 */

const MQTT_URL = process.env.MQTT_URL;
const SKIP = !MQTT_URL ? 'MQTT_URL is not set (e.g. MQTT_URL=mqtt://127.0.0.1:1883); .ci/run sets it' : false;

interface State {
  online: boolean;
  timestamp: number;
  retain: boolean;
  qos: number;
}

describe('manufacturing over MQTT: the gateway as Sparkplug primary host (STATE)', { skip: SKIP }, () => {
  const hostId = `gateway-host-${process.pid}-${Date.now()}`;
  const stateTopic = `spBv1.0/STATE/${hostId}`;
  const clientId = `gateway-state-${process.pid}-${Date.now()}`;
  let workDir: string;
  let edge: MqttClient;
  const states: State[] = [];
  const children: ChildProcess[] = [];

  /** What an edge node newly connected would see: the retained STATE, read by a fresh subscriber. */
  async function retained(): Promise<State> {
    const client = await connectAsync(MQTT_URL!, { clientId: `test-state-late-${process.pid}`, clean: true });
    try {
      const got = new Promise<State>((resolve) =>
        client.on('message', (_topic, body, packet) => resolve(parse(body, packet))),
      );
      await client.subscribeAsync(stateTopic, { qos: 1 });
      return await got;
    } finally {
      await client.endAsync();
    }
  }

  function parse(body: Buffer, packet: IPublishPacket): State {
    const json = JSON.parse(body.toString('utf8')) as { online: boolean; timestamp: number };
    assert.deepEqual(Object.keys(json).sort(), ['online', 'timestamp'], body.toString());
    return { online: json.online, timestamp: json.timestamp, retain: packet.retain, qos: packet.qos };
  }

  function gateway(port: number): ChildProcess {
    const child = spawnSparkplugHost({
      workDir,
      dataDir: join(workDir, `data-${port}`),
      mqttUrl: MQTT_URL!,
      clientId,
      hostId,
      port,
    });
    children.push(child);
    return child;
  }

  const next = (after: number, what: string) =>
    until(
      what,
      () => {
        if (children.some((c) => c.exitCode !== null && c.exitCode !== 0 && c.signalCode === null)) {
          throw new Error('a gateway exited with an error');
        }
        return states.length > after ? states[after] : undefined;
      },
      60_000,
    );

  before(async () => {
    workDir = mkdtempSync(join(tmpdir(), 'plant-state-'));
    cpSync(join(REPO_ROOT, 'models', 'manufacturing'), join(workDir, 'models', 'manufacturing'), { recursive: true });
    // The edge node's view, as MQTT 5 with Retain As Published so that the retain flag of live messages shows.
    edge = await connectAsync(MQTT_URL!, {
      clientId: `test-state-edge-${process.pid}`,
      clean: true,
      protocolVersion: 5,
    });
    // An empty body is the retained STATE being cleared (after), not a STATE.
    edge.on('message', (_topic, body, packet) => body.length > 0 && states.push(parse(body, packet)));
    await edge.subscribeAsync(stateTopic, { qos: 1, rap: true });
  });

  after(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    // Clear the retained STATE and drop the gateway's persistent session.
    if (edge) {
      await edge.publishAsync(stateTopic, '', { qos: 1, retain: true });
      await edge.endAsync();
    }
    if (MQTT_URL) await (await connectAsync(MQTT_URL, { clientId, clean: true })).endAsync();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
  });

  it('online once subscribed, offline when stopped gracefully, and offline by its will when killed', async () => {
    const port = 3800 + Math.floor(Math.random() * 100);

    const first = gateway(port);
    const online = await next(0, 'STATE online after boot');
    assert.equal(online.online, true);
    assert.equal(online.retain, true);
    assert.equal(online.qos, 1);
    assert.ok(Math.abs(online.timestamp - Date.now()) < 120_000, `a current UTC time: ${online.timestamp}`);
    assert.deepEqual(await retained(), { ...online, retain: true }, 'an edge node connecting later sees it');

    const stopped = new Promise((r) => first.once('exit', r));
    first.kill('SIGTERM');
    const offline = await next(1, 'STATE offline after a graceful stop');
    assert.equal(offline.online, false);
    assert.equal(offline.retain, true);
    assert.equal(offline.qos, 1);
    assert.ok(offline.timestamp >= online.timestamp, 'stamped at the disconnect, not before the birth');
    await stopped;
    assert.equal(first.exitCode, 0);
    assert.equal(states.length, 2, 'a DISCONNECT after it: no will as well');
    assert.equal((await retained()).online, false);

    const second = gateway(port + 1);
    const again = await next(2, 'STATE online after a restart');
    assert.equal(again.online, true);
    assert.ok(again.timestamp >= offline.timestamp, 'a newer session, a newer timestamp');

    second.kill('SIGKILL');
    const will = await next(3, "the will's STATE offline after SIGKILL");
    assert.deepEqual(will, { online: false, timestamp: again.timestamp, retain: true, qos: 1 });
    assert.deepEqual(await retained(), will);
  });
});
