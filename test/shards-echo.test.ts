/**
 * The echo service on both transports with real TLS clients: concurrency, back-pressure from a
 * client that stops reading, abrupt disconnects, a shard that dies, and drain.
 */
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';

import { afterEach, describe, expect, test } from 'vitest';

import {
  connect,
  echoMessages,
  randomMessages,
  roundTrip,
  startService,
  waitFor,
  type TestService,
} from './helpers/service.js';

const TRANSPORTS = ['direct', 'relay'] as const;
const crashHandler = new URL('./fixtures/crash-handler.mjs', import.meta.url).href;

let service: TestService | null = null;

afterEach(async () => {
  await service?.server.close({ deadlineMs: 1_000 });
  service = null;
});

describe.each(TRANSPORTS)('%s transport', (transport) => {
  test('200 concurrent connections echo every byte', async () => {
    service = await startService({ transport });
    const s = service;

    const clients = Array.from({ length: 200 }, () =>
      echoMessages(s, randomMessages(1 + Math.floor(Math.random() * 8), 40_000)),
    );
    const echoed = await Promise.all(clients);
    expect(echoed.every((bytes) => bytes > 0)).toBe(true);

    const stats = await s.server.stats();
    const handshakes = stats.shards.reduce((sum, shard) => sum + shard.handshakesDone, 0);
    expect(handshakes).toBe(200);
    expect(stats.shards).toHaveLength(2);
    expect(stats.shards.every((shard) => shard.connectionsTotal > 0)).toBe(true);
  });

  test('stalled reader leaves neighbours running', async () => {
    service = await startService({ transport, shards: 1 });
    const s = service;
    const shardStats = async () => (await s.server.stats()).shards[0];
    const neighbours = () =>
      Promise.all(Array.from({ length: 20 }, () => echoMessages(s, randomMessages(20, 16_384))));

    await neighbours();
    const heapBefore = (await shardStats()).heapUsed;

    // A client that sends 32 MiB, more than the kernel buffers of both ends absorb, and never
    // reads its echo: the shard must push back on it instead of buffering it.
    const stalled = await connect(s);
    stalled.on('error', () => {}); // a reset at server shutdown must not fail the run
    stalled.pause();
    stalled.write(randomBytes(32 * 1024 * 1024));
    await waitFor(async () => (await shardStats()).bytesIn > 1024 * 1024);

    // Neighbours on the same shard get every byte back while it stays stalled. Their rate next
    // to a stalled client is measured by bench/transports.ts, not asserted here.
    await neighbours();
    await neighbours();

    // The stalled connection is still open (the neighbours' sockets close once their FIN is
    // answered), and its bytes did not pile up in the shard.
    await waitFor(async () => (await shardStats()).connectionsOpen === 1);
    const shard = await shardStats();
    expect(shard.heapUsed - heapBefore).toBeLessThan(16 * 1024 * 1024);
    if (transport === 'relay') expect(shard.ringRxUsed).toBeLessThan(shard.ringCapacity);
    stalled.destroy();
  });

  test('abrupt disconnect spares the others', async () => {
    service = await startService({ transport });
    const s = service;

    const vanishing = await Promise.all(Array.from({ length: 10 }, () => connect(s)));
    for (const socket of vanishing) {
      socket.write(randomBytes(200_000));
      socket.destroy();
    }
    await Promise.all(Array.from({ length: 20 }, () => echoMessages(s, randomMessages(5, 30_000))));

    await waitFor(async () => (await s.server.stats()).connections.open === 0);
  });

  test('a dead shard is restarted', async () => {
    service = await startService({ transport, handler: fileURLToPath(crashHandler) });
    const s = service;

    // Long-lived connections on both shards, then one shard dies.
    const survivors = await Promise.all(Array.from({ length: 6 }, () => connect(s)));
    const exited = new Promise<number>((resolve) => s.server.once('shard-exit', resolve));
    const killer = await connect(s);
    killer.write('exit\n');
    const shardId = await exited;

    // Connections on the other shard still echo.
    let alive = 0;
    for (const socket of survivors) {
      const data = randomBytes(1000);
      const echoed =
        !socket.destroyed && (await roundTrip(socket, data).catch(() => null))?.equals(data);
      if (echoed) alive++;
    }
    // Round-robin put three of the six on each shard; the killer joined the first one.
    expect(alive).toBe(3);

    // The shard comes back, and new connections reach both shards again.
    await waitFor(async () => (await s.server.stats()).shards.length === 2);
    await Promise.all(Array.from({ length: 8 }, () => echoMessages(s, randomMessages(3, 5000))));
    const stats = await s.server.stats();
    expect(stats.shardRestarts).toBe(1);
    expect(
      stats.shards.find((shard) => shard.shardId === shardId)?.connectionsTotal,
    ).toBeGreaterThan(0);
    for (const socket of survivors) socket.destroy();
    killer.destroy();
  });

  test('drain delivers data in flight', async () => {
    service = await startService({ transport });
    const s = service;

    const sockets = await Promise.all(Array.from({ length: 10 }, () => connect(s)));
    const payload = randomBytes(1024 * 1024);
    const results = sockets.map((socket) => {
      const chunks: Buffer[] = [];
      socket.on('data', (chunk: Buffer) => chunks.push(chunk));
      return new Promise<{ bytes: Buffer; closeNotify: boolean }>((resolve) => {
        socket.on('end', () => resolve({ bytes: Buffer.concat(chunks), closeNotify: true }));
        socket.on('close', () => resolve({ bytes: Buffer.concat(chunks), closeNotify: false }));
      });
    });

    // Every client's payload reaches the server before the drain starts. The server counts
    // ciphertext, so the wait adds what TLS 1.3 puts around each 16 KiB record: a 5-byte
    // header, the content type byte and a 16-byte AEAD tag (RFC 8446 section 5.2).
    const bytesIn = async () => {
      const stats = await s.server.stats();
      return stats.shards.reduce((sum, shard) => sum + shard.bytesIn, 0);
    };
    const handshakes = async () => {
      const stats = await s.server.stats();
      return stats.shards.reduce((sum, shard) => sum + shard.handshakesDone, 0);
    };
    await waitFor(async () => (await handshakes()) === sockets.length);
    const records = Math.ceil(payload.byteLength / 16_384);
    const expected = (await bytesIn()) + sockets.length * (payload.byteLength + records * 22);

    for (const socket of sockets) socket.write(payload);
    await waitFor(async () => (await bytesIn()) >= expected);

    await s.server.close({ deadlineMs: 10_000 });
    service = null;

    for (const result of await Promise.all(results)) {
      expect(result.closeNotify).toBe(true);
      expect(result.bytes.equals(payload)).toBe(true);
    }
  });
});
