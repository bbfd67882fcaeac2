/**
 * TlsSocket between two real OpenSSL engines over an in-memory pipe with little buffering, so
 * short writes, EAGAIN, detached flushes and KeyUpdates all happen.
 */
import { createHash, randomBytes } from 'node:crypto';

import { afterEach, describe, expect, test } from 'vitest';

import { EAGAIN, ECONNRESET } from '../src/shared/codes.js';
import { type IoVec, iovAdvance, iovLength } from '../src/shared/iovec.js';
import { createSecureContext, type SecureContext } from '../src/tls/context.js';
import { FlushTracker } from '../src/tls/flush-tracker.js';
import { createMemoryPipe, type MemoryPipe } from '../src/tls/memory-pipe.js';
import { createEngine } from '../src/tls/openssl-engine.js';
import { MAX_RECORD_PLAINTEXT, TlsSocket } from '../src/tls/tls-socket.js';
import { FLUSHING } from '../src/tls/tls-socket-state.js';
import { testCerts } from './fixtures/certs.js';

const certs = testCerts();
const cleanups: Array<() => void> = [];

afterEach(() => {
  for (const cleanup of cleanups.splice(0)) cleanup();
});

interface Pair {
  client: TlsSocket;
  server: TlsSocket;
  pipe: MemoryPipe;
  tracker: FlushTracker;
}

/** Makes a client and a server TlsSocket over a memory pipe of `capacity` bytes each way. */
function makePair(capacity: number, trustedCa: string = certs.ca.cert): Pair {
  const serverContext: SecureContext = createSecureContext({
    cert: certs.server.cert,
    key: certs.server.key,
  });
  const clientContext: SecureContext = createSecureContext({
    ca: trustedCa,
    servername: 'localhost',
  });
  const pipe = createMemoryPipe(capacity);
  const tracker = new FlushTracker();
  const client = new TlsSocket(pipe.a, createEngine(clientContext), { flushes: tracker });
  const server = new TlsSocket(pipe.b, createEngine(serverContext, { isServer: true }), {
    flushes: tracker,
  });
  cleanups.push(() => {
    client.close();
    server.close();
    clientContext.destroy();
    serverContext.destroy();
  });
  return { client, server, pipe, tracker };
}

/** Sends all of `iov` through `trySend`, parking on `writable` after EAGAIN or a short count. */
async function trySendAll(socket: TlsSocket, iov: IoVec): Promise<{ calls: number }> {
  let rest: IoVec = iov;
  let calls = 0;
  let wake: (() => void) | null = null;
  socket.setHandler({
    readable: () => undefined,
    writable: () => wake?.(),
  });

  while (iovLength(rest) > 0) {
    const result = socket.trySend(rest);
    calls++;
    if (result > 0) {
      rest = iovAdvance(rest, result);
      if (iovLength(rest) === 0) break;
    } else if (result !== EAGAIN) {
      throw new Error(`trySend returned ${result}`);
    }
    await new Promise<void>((resolve) => {
      wake = resolve;
    });
    wake = null;
  }
  return { calls };
}

/** Reads with `recv()` until `expected` bytes arrived, and returns them. */
async function recvExactly(socket: TlsSocket, expected: number): Promise<Buffer> {
  const out = Buffer.alloc(expected);
  let filled = 0;
  while (filled < expected) {
    const n = await socket.recv(out.subarray(filled));
    if (n === 0) throw new Error(`close_notify after ${filled} of ${expected} bytes`);
    filled += n;
  }
  return out;
}

/** Reads with `tryRecv`, parking on `readable` after EAGAIN, until `expected` bytes arrived. */
async function tryRecvExactly(socket: TlsSocket, expected: number): Promise<Buffer> {
  const out = Buffer.alloc(expected);
  let filled = 0;
  let wake: (() => void) | null = null;
  socket.setHandler({
    readable: () => wake?.(),
    writable: () => undefined,
  });

  while (filled < expected) {
    const n = socket.tryRecv(out, filled, expected - filled);
    if (n > 0) {
      filled += n;
      continue;
    }
    if (n !== EAGAIN) throw new Error(`tryRecv returned ${n} after ${filled} bytes`);
    await new Promise<void>((resolve) => {
      wake = resolve;
    });
    wake = null;
  }
  return out;
}

/** Splits `data` into `count` arrays: even, random, or random with empty arrays mixed in. */
function split(data: Uint8Array, count: number, mode: string, seed: number): Uint8Array[] {
  let state = seed;
  const random = (): number => {
    state = (state * 1_103_515_245 + 12_345) % 2_147_483_648;
    return state / 2_147_483_648;
  };

  const cuts: number[] = [];
  if (mode === 'even') {
    for (let i = 1; i < count; i++) cuts.push(Math.floor((data.length * i) / count));
  } else {
    for (let i = 1; i < count; i++) cuts.push(Math.floor(random() * data.length));
    cuts.sort((x, y) => x - y);
  }

  const parts: Uint8Array[] = [];
  let start = 0;
  for (const cut of [...cuts, data.length]) {
    parts.push(data.subarray(start, cut));
    if (mode === 'with empties' && random() < 0.3) parts.push(new Uint8Array(0));
    start = cut;
  }
  return parts;
}

describe('TlsSocket over a memory pipe', () => {
  const counts = [1, 2, 3, 16, 17, 64, 1024];
  const modes = ['even', 'random', 'with empties'];
  const cases = counts.flatMap((count) => modes.map((mode) => ({ count, mode })));

  test.each(cases)('scatter-gather of $count arrays split $mode', async ({ count, mode }) => {
    const { client, server, pipe } = makePair(4096);
    await Promise.all([client.handshake(), server.handshake()]);

    const total = 48 * 1024 + count;
    const data = randomBytes(total);
    const iov = split(data, count, mode, count * 7 + mode.length);
    expect(iovLength(iov)).toBe(total);

    const recordsBefore = pipe.a.sent.applicationDataRecords;
    const [received, { calls }] = await Promise.all([
      recvExactly(server, total),
      trySendAll(client, iov),
    ]);
    expect(received.equals(data)).toBe(true);

    // Small arrays share records, so the records are about as few as 16 KiB records allow: the
    // last one may be short. One record per array would be `count` records.
    const records = pipe.a.sent.applicationDataRecords - recordsBefore;
    expect(records).toBeLessThanOrEqual(Math.ceil(total / MAX_RECORD_PLAINTEXT) + 1);
    expect(calls).toBeGreaterThan(1);
    if (count >= 64) expect(records).toBeLessThan(count / 4);
  });

  test('16 MiB each way with KeyUpdates', async () => {
    const { client, server } = makePair(1024);
    await Promise.all([client.handshake(), server.handshake()]);

    const size = 16 * 1024 * 1024;
    const chunk = 64 * 1024;
    const clientData = randomBytes(size);
    const serverData = randomBytes(size);
    let keyUpdates = 0;

    const pump = async (socket: TlsSocket, data: Buffer): Promise<void> => {
      for (let offset = 0; offset < size; offset += chunk) {
        if (offset % (2 * 1024 * 1024) === 0 && offset > 0) keyUpdates += socket.keyUpdate(true);
        await socket.send([data.subarray(offset, offset + chunk)]);
      }
    };
    const digest = async (socket: TlsSocket): Promise<string> => {
      const hash = createHash('sha256');
      const buf = new Uint8Array(32 * 1024);
      let got = 0;
      while (got < size) {
        const n = await socket.recv(buf);
        if (n === 0) throw new Error(`close_notify after ${got} bytes`);
        hash.update(buf.subarray(0, n));
        got += n;
      }
      return hash.digest('hex');
    };

    const [, , serverGot, clientGot] = await Promise.all([
      pump(client, clientData),
      pump(server, serverData),
      digest(server),
      digest(client),
    ]);
    expect(serverGot).toBe(createHash('sha256').update(clientData).digest('hex'));
    expect(clientGot).toBe(createHash('sha256').update(serverData).digest('hex'));
    expect(keyUpdates).toBe(14);
  });

  test('shutdown after stranded ciphertext', async () => {
    const { client, server, tracker } = makePair(1024);
    await Promise.all([client.handshake(), server.handshake()]);

    const data = randomBytes(12_000);
    expect(client.trySend([data])).toBe(data.length);
    expect(client.state & FLUSHING).toBe(FLUSHING);

    const reading = (async () => {
      const received = await recvExactly(server, data.length);
      const end = await server.recv(new Uint8Array(16));
      return { received, end };
    })();
    await client.shutdown();
    const { received, end } = await reading;

    expect(received.equals(data)).toBe(true);
    expect(end).toBe(0);
    expect(client.state & FLUSHING).toBe(0);
    expect(tracker.totalStarted).toBeGreaterThanOrEqual(1);
  });

  test.each([1, 3])('no deadlock over a %i-byte pipe', async (capacity) => {
    const { client, server } = makePair(capacity);
    await Promise.all([client.handshake(), server.handshake()]);

    const data = randomBytes(40_000);
    const [received] = await Promise.all([
      recvExactly(server, data.length),
      client.send([data.subarray(0, 100), data.subarray(100)]),
    ]);
    expect(received.equals(data)).toBe(true);
  });

  test('handshake driven by trySend and tryRecv', async () => {
    const { client, server } = makePair(512);
    const data = randomBytes(70_000);
    const [received] = await Promise.all([
      tryRecvExactly(server, data.length),
      trySendAll(client, [data]),
    ]);
    expect(received.equals(data)).toBe(true);
    expect(client.info().version).toBe('TLSv1.3');
  });

  test('tracker idle after stranded ciphertext', async () => {
    const { client, server, tracker } = makePair(1024);
    await Promise.all([client.handshake(), server.handshake()]);

    const data = randomBytes(9_000);
    expect(client.trySend([data])).toBe(data.length);
    expect(tracker.running).toBeGreaterThanOrEqual(1);

    const [received] = await Promise.all([recvExactly(server, data.length), tracker.idle()]);
    expect(received.equals(data)).toBe(true);
    expect(client.state & FLUSHING).toBe(0);
  });

  test('untrusted certificate fails both handshakes', async () => {
    const { client, server } = makePair(4096, certs.otherCa.cert);
    const [clientResult, serverResult] = await Promise.allSettled([
      client.handshake(),
      server.handshake(),
    ]);

    expect(clientResult.status).toBe('rejected');
    const clientError = (clientResult as PromiseRejectedResult).reason;
    expect(clientError.code).toBe('ECONNRESET');
    expect(clientError.cause.message).toMatch(/certificate verify failed/);
    expect(client.error).toBe(clientError.cause);
    expect(serverResult.status).toBe('rejected');
    expect(client.trySend([new Uint8Array(1)])).toBe(ECONNRESET);
  });

  test('truncated stream reads ECONNRESET', async () => {
    const { client, server, pipe } = makePair(4096);
    await Promise.all([client.handshake(), server.handshake()]);

    await client.send([randomBytes(100)]);
    pipe.a.shutdownWrite();
    await expect(recvExactly(server, 200)).rejects.toMatchObject({ code: 'ECONNRESET' });
  });
});
