/**
 * The acceptor and the shard pool: connection limit, handshake timeout, balance policies, IPv6.
 */
import net from 'node:net';
import tls from 'node:tls';

import { afterEach, expect, test } from 'vitest';

import {
  connect,
  echoMessages,
  randomMessages,
  startService,
  waitFor,
  type TestService,
} from './helpers/service.js';

let service: TestService | null = null;

afterEach(async () => {
  await service?.server.close({ deadlineMs: 1_000 });
  service = null;
});

/** Resolves when the server closes a plain TCP connection, with the bytes it sent first. */
function closedByServer(socket: net.Socket): Promise<number> {
  return new Promise((resolve) => {
    let bytes = 0;
    socket.on('data', (chunk: Buffer) => (bytes += chunk.byteLength));
    socket.on('error', () => {});
    socket.on('close', () => resolve(bytes));
  });
}

test('connection limit closes extra connections', async () => {
  service = await startService({ maxConnections: 2 });
  const s = service;

  const held = [await connect(s), await connect(s)];
  await waitFor(async () => (await s.server.stats()).connections.open === 2);

  const extra = net.connect({ host: '127.0.0.1', port: s.port });
  expect(await closedByServer(extra)).toBe(0);
  expect((await s.server.stats()).connections.rejected).toBe(1);

  // Room again once one closes.
  held[0].destroy();
  await waitFor(async () => (await s.server.stats()).connections.open === 1);
  await echoMessages(s, randomMessages(3, 1000));
  held[1].destroy();
});

test('handshake timeout closes a silent client', async () => {
  service = await startService({ handshakeTimeoutMs: 300, shards: 1 });
  const s = service;

  const silent = net.connect({ host: '127.0.0.1', port: s.port });
  await closedByServer(silent);

  // The shard counts the connection until the client's FIN has come back.
  await waitFor(async () => (await s.server.stats()).shards[0].connectionsOpen === 0);
  const [shard] = (await s.server.stats()).shards;
  expect(shard.handshakesFailed).toBe(1);
});

test('least-connections picks the idle shard', async () => {
  service = await startService({ balance: 'least-connections', shards: 2 });
  const s = service;

  // Two long-lived connections land on different shards.
  const first = await connect(s);
  await waitFor(async () => (await s.server.stats()).connections.open === 1);
  const second = await connect(s);
  await waitFor(async () => (await s.server.stats()).connections.open === 2);
  let stats = await s.server.stats();
  expect(stats.shards.map((shard) => shard.connectionsOpen).sort()).toEqual([1, 1]);

  // With one shard emptied, the next two both go to it.
  first.destroy();
  await waitFor(async () => (await s.server.stats()).connections.open === 1);
  const third = await connect(s);
  await waitFor(async () => (await s.server.stats()).connections.open === 2);
  stats = await s.server.stats();
  expect(stats.shards.map((shard) => shard.connectionsOpen).sort()).toEqual([1, 1]);

  second.destroy();
  third.destroy();
});

test('listens on IPv6 loopback', async () => {
  service = await startService({ host: '::1' });
  const socket = await connect(service, { host: '::1' });
  const echoed = await new Promise<string>((resolve) => {
    socket.once('data', (chunk: Buffer) => resolve(chunk.toString()));
    socket.write('over ipv6');
  });
  expect(echoed).toBe('over ipv6');
  socket.destroy();
});

test('round-robin spreads connections evenly', async () => {
  service = await startService({ shards: 2 });
  const s = service;
  await Promise.all(Array.from({ length: 10 }, () => echoMessages(s, randomMessages(2, 500))));

  const stats = await s.server.stats();
  expect(stats.shards.map((shard) => shard.connectionsTotal)).toEqual([5, 5]);
});

/** Connects with `session` (if any), exchanges one message, and returns reuse and the ticket. */
async function resumeOnce(s: TestService, version: 'TLSv1.2' | 'TLSv1.3', session?: Buffer) {
  const socket = tls.connect({
    host: '127.0.0.1',
    port: s.port,
    ca: s.ca,
    servername: 'localhost',
    session,
    minVersion: version,
    maxVersion: version,
  });
  // A TLS 1.2 resumption may keep its ticket, so the newest session seen is the one to reuse.
  let latest = session;
  socket.on('session', (data: Buffer) => (latest = data));
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', () => resolve());
    socket.once('error', reject);
  });
  const reused = socket.isSessionReused();

  // TLS 1.3 tickets arrive after the handshake, before the first echo.
  const echoed = new Promise<void>((resolve) => socket.once('data', () => resolve()));
  socket.write('x');
  await echoed;
  socket.end();
  if (latest === undefined) throw new Error('the server issued no session ticket');
  return { reused, ticket: latest };
}

test.each(['TLSv1.2', 'TLSv1.3'] as const)('%s tickets resume on every shard', async (version) => {
  service = await startService({ shards: 2 });
  const s = service;

  // Round-robin alternates the shards, so each reconnect lands on the other one.
  let { ticket } = await resumeOnce(s, version);
  for (let i = 0; i < 4; i++) {
    const result = await resumeOnce(s, version, ticket);
    expect(result.reused).toBe(true);
    ticket = result.ticket;
  }

  // A certificate reload keeps the ticket keys.
  await s.server.reload();
  expect((await resumeOnce(s, version, ticket)).reused).toBe(true);
});
