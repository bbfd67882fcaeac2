import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { Worker } from 'node:worker_threads';

import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { RelayPump } from '../src/main/relay.js';
import { createRingBuffer } from '../src/shared/ring.js';

/** Window per connection and direction: small, so that credit runs out often. */
const WINDOW = 16 * 1024;
/** Smallest ring, so that 200 connections fill it and the pump's queue is used. */
const RING_BYTES = 64 * 1024;

interface ShardMessage {
  type: string;
  port: number;
  bytes: number;
  checksum: number;
}

let worker: Worker;
let pump: RelayPump;
let server: net.Server;
let port: number;
/** Connection id of each accepted socket, by the client's local port. */
const idByPort = new Map<number, number>();
const messages: ShardMessage[] = [];
const messageWaiters: Array<() => void> = [];

/** Resolves when `check` returns true, rechecking every 10 ms; rejects after `ms`. */
async function until(what: string, check: () => boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Resolves with the first shard message that matches, waiting for new ones as they come. */
async function shardMessage(match: (m: ShardMessage) => boolean): Promise<ShardMessage> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const found = messages.find(match);
    if (found !== undefined) return found;
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for a shard message; got ${JSON.stringify(messages)}`);
    }
    await new Promise<void>((resolve) => {
      messageWaiters.push(resolve);
      setTimeout(resolve, 1000);
    });
  }
}

/** Returns random bytes led by the service byte `mode`. */
function payload(mode: string, size: number): Buffer {
  const bytes = randomBytes(size);
  bytes[0] = mode.charCodeAt(0);
  return bytes;
}

/** Writes `data` in random-sized chunks, ends the socket and resolves when all is written. */
function writeChunks(socket: net.Socket, data: Buffer, end = true): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    const n = Math.min(data.length - offset, 1 + Math.floor(Math.random() * 32 * 1024));
    socket.write(data.subarray(offset, offset + n));
    offset += n;
  }
  return new Promise((resolve, reject) => {
    if (end) socket.end(resolve);
    else socket.write(Buffer.alloc(0), () => resolve());
    socket.once('error', reject);
  });
}

/** Connects a client. Resolves once connected. */
function connect(): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true }, () =>
      resolve(socket),
    );
    socket.once('error', reject);
  });
}

/** Sends `data` to the echo service and resolves with everything it sends back. */
async function echo(data: Buffer): Promise<Buffer> {
  const socket = await connect();
  const received: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => received.push(chunk));
  const ended = new Promise<void>((resolve, reject) => {
    socket.once('end', resolve);
    socket.once('error', reject);
  });

  await writeChunks(socket, data);
  await ended;
  socket.destroy();
  return Buffer.concat(received);
}

beforeAll(async () => {
  const rx = createRingBuffer(RING_BYTES);
  const tx = createRingBuffer(RING_BYTES);
  worker = new Worker(new URL('./fixtures/ring-echo-shard.mjs', import.meta.url), {
    workerData: { rx, tx },
  });
  await new Promise<void>((resolve, reject) => {
    worker.on('message', (message: ShardMessage) => {
      if (message.type === 'ready') return resolve();
      messages.push(message);
      for (const wake of messageWaiters.splice(0)) wake();
    });
    worker.once('error', reject);
  });

  pump = new RelayPump(rx, tx, { creditBytes: WINDOW });
  server = net.createServer({ allowHalfOpen: true }, (socket) => {
    idByPort.set(socket.remotePort!, pump.add(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as net.AddressInfo).port;
});

afterAll(async () => {
  pump?.close();
  await new Promise((resolve) => server?.close(resolve));
  await worker?.terminate();
});

describe('relay pump and ring endpoint', () => {
  test('200 concurrent clients echo every byte', async () => {
    const sent = Array.from({ length: 200 }, () =>
      payload('E', 1 + Math.floor(Math.random() * 200 * 1024)),
    );
    const echoed = await Promise.all(sent.map((data) => echo(data)));

    for (let i = 0; i < sent.length; i++) {
      expect(echoed[i].length, `client ${i} length`).toBe(sent[i].length);
      expect(echoed[i].equals(sent[i]), `client ${i} bytes`).toBe(true);
    }
    await until('all connections to close', () => pump.stats().connections === 0);

    const stats = pump.stats();
    const total = sent.reduce((sum, data) => sum + data.length, 0);
    expect(stats.rxBytes).toBe(total);
    expect(stats.txBytes).toBe(total);
    expect(stats.queuedRecords).toBe(0);
    expect(stats.queuedBytes).toBe(0);
    expect(stats.creditStalls).toBeGreaterThan(0);
    expect(stats.ringCapacity).toBe(RING_BYTES);
  });

  test('stuck client does not stall others', async () => {
    // The stuck client sends far more than the kernel's loopback buffers hold and reads nothing.
    const stuckData = payload('E', 24 * 1024 * 1024);
    const stuck = await connect();
    stuck.pause();
    const stuckEnded = new Promise<void>((resolve) => stuck.once('end', resolve));
    const stuckHash = createHash('sha256');
    let stuckReceived = 0;
    const writing = writeChunks(stuck, stuckData);

    await until('the pump to know the stuck client', () => idByPort.has(stuck.localPort!));
    const id = idByPort.get(stuck.localPort!)!;
    await until('the stuck connection to run out of credit', () => {
      const figures = pump.connectionStats(id);
      return figures !== undefined && figures.rxCredit === 0 && figures.txBuffered > 0;
    });

    const others = Array.from({ length: 20 }, () => payload('E', 64 * 1024));
    const echoed = await Promise.all(others.map((data) => echo(data)));
    for (let i = 0; i < others.length; i++) {
      expect(echoed[i].equals(others[i]), `client ${i} bytes`).toBe(true);
    }

    const figures = pump.connectionStats(id)!;
    expect(figures.txBuffered).toBeLessThanOrEqual(WINDOW);
    expect(figures.rxHeld).toBeLessThanOrEqual(64 * 1024);
    expect(figures.rxCredit).toBe(0);

    // Reading again lets the stuck connection finish with every byte intact.
    stuck.on('data', (chunk: Buffer) => {
      stuckHash.update(chunk);
      stuckReceived += chunk.length;
    });
    stuck.resume();
    await writing;
    await stuckEnded;
    stuck.destroy();
    expect(stuckReceived).toBe(stuckData.length);
    expect(stuckHash.digest('hex')).toBe(createHash('sha256').update(stuckData).digest('hex'));
  });

  test('abrupt disconnect resets only its connection', async () => {
    const victim = await connect();
    const victimPort = victim.localPort!;
    let echoedBack = 0;
    const someEcho = new Promise<void>((resolve) =>
      victim.on('data', (chunk: Buffer) => {
        echoedBack += chunk.length;
        if (echoedBack >= 64 * 1024) resolve();
      }),
    );
    victim.on('error', () => {});
    void writeChunks(victim, payload('E', 8 * 1024 * 1024), false).catch(() => {});

    const others = Array.from({ length: 10 }, () => payload('E', 256 * 1024));
    const echoing = Promise.all(others.map((data) => echo(data)));

    await someEcho;
    victim.resetAndDestroy();

    const reset = await shardMessage((m) => m.port === victimPort);
    expect(reset.type).toBe('reset');

    const echoed = await echoing;
    for (let i = 0; i < others.length; i++) {
      expect(echoed[i].equals(others[i]), `client ${i} bytes`).toBe(true);
    }
    await until('the pump to drop the victim', () => {
      return pump.connectionStats(idByPort.get(victimPort)!) === undefined;
    });
  });

  test('client half-close still gets the echo', async () => {
    const data = payload('E', 300 * 1024);
    const socket = await connect();
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    const ended = new Promise<void>((resolve) => socket.once('end', resolve));

    // End first, read afterwards: every byte comes back after the client's FIN.
    socket.pause();
    await writeChunks(socket, data);
    socket.resume();
    await ended;
    socket.destroy();

    expect(Buffer.concat(received).equals(data)).toBe(true);
  });

  test('shard half-close still receives', async () => {
    const socket = await connect();
    const clientPort = socket.localPort!;
    const shardEnded = new Promise<void>((resolve) => socket.once('end', resolve));
    let unexpected = 0;
    socket.on('data', (chunk: Buffer) => (unexpected += chunk.length));
    socket.write('H');
    await shardEnded;

    // The shard's side is closed; ours still carries data to it.
    const rest = randomBytes(500 * 1024);
    await writeChunks(socket, rest);
    const done = await shardMessage((m) => m.port === clientPort);
    socket.destroy();

    let checksum = 0x48;
    for (const byte of rest) checksum = (checksum + byte) | 0;
    expect(unexpected).toBe(0);
    expect(done.type).toBe('done');
    expect(done.bytes).toBe(1 + rest.length);
    expect(done.checksum).toBe(checksum);
  });
});
