/**
 * Scenario tables for TlsSocket's trySend and tryRecv, driven by a scripted engine and upstream.
 */
import { describe, expect, test } from 'vitest';
import {
  EAGAIN,
  ECONNRESET,
  EOF_ABRUPT,
  EOF_GRACEFUL,
  EPIPE,
  NEED_READ,
  NEED_WRITE,
  codeName,
} from '../src/shared/codes.js';
import { FlushTracker } from '../src/tls/flush-tracker.js';
import { TlsSocket } from '../src/tls/tls-socket.js';
import {
  FLUSHING,
  PEER_CLOSED,
  PEER_SHUT_WRITES,
  READ_WAITS_WRITE,
  RECEIVING,
  SENDING,
  WRITE_WAITS_READ,
  describeState,
} from '../src/tls/tls-socket-state.js';
import {
  FAKE_RECORD_OVERHEAD,
  FakeEngine,
  FakeUpstream,
  type EngineStep,
  type RecvStep,
  type SendStep,
} from './fixtures/fake-engine.js';

/** An upstream error of the transport's own (EIO), distinct from every TLS code. */
const EIO = -5;

interface Ctx {
  engine: FakeEngine;
  upstream: FakeUpstream;
  socket: TlsSocket;
  tracker: FlushTracker;
  events: string[];
}

function makeCtx(): Ctx {
  const engine = new FakeEngine();
  const upstream = new FakeUpstream();
  const tracker = new FlushTracker();
  const socket = new TlsSocket(upstream, engine, { flushes: tracker });
  const events: string[] = [];
  socket.setHandler({
    readable: () => events.push('readable'),
    writable: () => events.push('writable'),
  });
  return { engine, upstream, socket, tracker, events };
}

/** Lets queued microtasks run (the socket delivers its own callbacks from microtasks). */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

function bytes(n: number, fill = 1): Uint8Array {
  return new Uint8Array(n).fill(fill);
}

function stateOf(socket: TlsSocket): string {
  return describeState(socket.state);
}

interface SendScenario {
  name: string;
  /** One line on what the row means. */
  meaning: string;
  /** Puts the socket in its initial state, through its public API. */
  setup?: (ctx: Ctx) => Promise<void> | void;
  handshakeDone?: boolean;
  engineWrite?: EngineStep[];
  upstreamSend?: SendStep[];
  upstreamRecv?: RecvStep[];
  iov: number[];
  expected: number;
  /** What the next call with the rest of the iovec returns, when the row checks it. */
  expectedNext?: number;
  /** State bits that must be set after the call. */
  stateSet?: number;
  check?: (ctx: Ctx) => Promise<void> | void;
}

const sendScenarios: SendScenario[] = [
  {
    name: 'write conflict',
    meaning: 'a send() owns the write side, so trySend waits its turn',
    setup: async ({ engine, upstream, socket }) => {
      engine.queueOutput(100);
      upstream.sendScript = [EAGAIN];
      socket.send([bytes(10)]).catch(() => undefined);
      await settle();
    },
    iov: [10],
    expected: EAGAIN,
    stateSet: SENDING,
  },
  {
    name: 'NEED_WRITE with upstream EAGAIN',
    meaning: 'the engine output is full and the upstream takes nothing: no byte is consumed',
    engineWrite: [
      (e) => {
        e.queueOutput(500);
        return NEED_WRITE;
      },
    ],
    upstreamSend: [EAGAIN, EAGAIN],
    iov: [100],
    expected: EAGAIN,
    check: ({ engine }) => {
      expect(engine.plaintext.length).toBe(0);
      expect(engine.outputPending()).toBe(500);
    },
  },
  {
    name: 'NEED_WRITE with a short upstream write',
    meaning: 'the flush sends what fits, the engine stays full, so the call returns EAGAIN',
    engineWrite: [
      (e) => {
        e.queueOutput(500);
        return NEED_WRITE;
      },
    ],
    upstreamSend: [200, EAGAIN],
    iov: [100],
    expected: EAGAIN,
    check: ({ upstream, engine }) => {
      expect(upstream.sent).toEqual([200]);
      expect(engine.outputPending()).toBe(300);
    },
  },
  {
    name: 'NEED_WRITE then room',
    meaning: 'the flush empties the engine, and the retried write consumes everything',
    engineWrite: [
      (e) => {
        e.queueOutput(500);
        return NEED_WRITE;
      },
    ],
    iov: [100],
    expected: 100,
    check: ({ upstream }) => {
      expect(upstream.sent).toEqual([500, 100 + FAKE_RECORD_OVERHEAD]);
    },
  },
  {
    name: 'NEED_READ with upstream end of stream',
    meaning: 'the handshake needs input but the transport ended: a dirty shutdown, ECONNRESET',
    handshakeDone: false,
    engineWrite: [NEED_READ],
    upstreamRecv: [0],
    iov: [100],
    expected: ECONNRESET,
    expectedNext: ECONNRESET,
    check: ({ engine }) => {
      expect(engine.inputEof).toBe(true);
    },
  },
  {
    name: 'NEED_READ with an upstream error',
    meaning: 'the read for the handshake fails: the upstream error comes back as is',
    handshakeDone: false,
    engineWrite: [NEED_READ],
    upstreamRecv: [EIO],
    iov: [100],
    expected: EIO,
    expectedNext: EIO,
  },
  {
    name: 'NEED_READ with input available',
    meaning: 'the handshake input is there: it is pushed and the write goes on',
    handshakeDone: false,
    engineWrite: [NEED_READ],
    upstreamRecv: [bytes(50, 9)],
    iov: [100],
    expected: 100,
    check: ({ engine }) => {
      expect(engine.input.length).toBe(50);
    },
  },
  {
    name: 'NEED_READ with no input yet',
    meaning: 'the handshake waits for the peer: EAGAIN, and writable follows new input',
    handshakeDone: false,
    engineWrite: [NEED_READ],
    iov: [100],
    expected: EAGAIN,
    stateSet: WRITE_WAITS_READ,
    check: async ({ socket, upstream, events }) => {
      upstream.handler!.readable();
      await settle();
      expect(events).toContain('writable');
      expect(socket.state & WRITE_WAITS_READ).toBe(0);
    },
  },
  {
    name: 'read conflict',
    meaning: 'the engine needs input but a recv() owns the read side: EAGAIN',
    handshakeDone: false,
    setup: async ({ socket }) => {
      socket.recv(new Uint8Array(64)).catch(() => undefined);
      await settle();
    },
    engineWrite: [NEED_READ],
    iov: [100],
    expected: EAGAIN,
    stateSet: WRITE_WAITS_READ | RECEIVING,
  },
  {
    name: 'engine EOF_ABRUPT',
    meaning: 'the engine reports truncation or a fatal alert: ECONNRESET',
    engineWrite: [EOF_ABRUPT],
    iov: [100],
    expected: ECONNRESET,
    expectedNext: ECONNRESET,
  },
  {
    name: 'engine EOF_GRACEFUL',
    meaning: "the peer's close_notify arrived: writing is over, EPIPE",
    engineWrite: [EOF_GRACEFUL],
    iov: [100],
    expected: EPIPE,
    expectedNext: EPIPE,
    stateSet: PEER_CLOSED,
  },
  {
    name: 'engine throws',
    meaning: 'a protocol failure: ECONNRESET, and the error object is kept',
    engineWrite: [new Error('bad record mac')],
    iov: [100],
    expected: ECONNRESET,
    check: ({ socket }) => {
      expect((socket.error as Error).message).toBe('bad record mac');
    },
  },
  {
    name: 'pending output flushed first',
    meaning: 'ciphertext from an earlier call leaves before the new records',
    setup: ({ engine }) => engine.queueOutput(300),
    iov: [100],
    expected: 100,
    check: ({ upstream }) => {
      expect(upstream.sent).toEqual([300, 100 + FAKE_RECORD_OVERHEAD]);
    },
  },
  {
    name: 'pending output and a full upstream',
    meaning: 'earlier ciphertext does not fit: nothing new is consumed, EAGAIN',
    setup: ({ engine }) => engine.queueOutput(300),
    upstreamSend: [EAGAIN],
    iov: [100],
    expected: EAGAIN,
    check: ({ engine }) => {
      expect(engine.writeCalls.length).toBe(0);
    },
  },
  {
    name: 'bytes consumed then an error',
    meaning: 'the consumed count comes back now and the error with the next call',
    engineWrite: [20_000, EOF_ABRUPT],
    iov: [20_000, 20_000],
    expected: 20_000,
    expectedNext: ECONNRESET,
  },
  {
    name: 'bytes consumed then an upstream error',
    meaning: 'the final flush fails after a consumed write: count now, error next call',
    upstreamSend: [EIO],
    iov: [100],
    expected: 100,
    expectedNext: EIO,
  },
  {
    name: 'all consumed with a partial flush',
    meaning: 'a detached flush drains the rest; trySend waits for it, then works again',
    upstreamSend: [50],
    iov: [100],
    expected: 100,
    stateSet: FLUSHING,
    check: async ({ socket, upstream, tracker, events }) => {
      expect(tracker.running).toBe(1);
      expect(socket.trySend([bytes(10)])).toBe(EAGAIN);

      upstream.handler!.writable();
      await settle();
      expect(tracker.running).toBe(0);
      expect(tracker.totalStarted).toBe(1);
      expect(events).toContain('writable');
      expect(upstream.sentBytes()).toBe(100 + FAKE_RECORD_OVERHEAD);
      expect(socket.trySend([bytes(10)])).toBe(10);
    },
  },
  {
    name: 'detached flush meets an upstream error',
    meaning: 'the flush ends on the error, which the next trySend returns',
    upstreamSend: [50],
    iov: [100],
    expected: 100,
    check: async ({ socket, upstream, tracker }) => {
      upstream.sendScript = [EIO];
      upstream.handler!.writable();
      await settle();
      expect(tracker.running).toBe(0);
      expect(socket.state & FLUSHING).toBe(0);
      expect(socket.trySend([bytes(10)])).toBe(EIO);
    },
  },
  {
    name: 'small arrays coalesced',
    meaning: 'sixteen 64-byte arrays become one engine write, so one record',
    iov: Array.from({ length: 16 }, () => 64),
    expected: 1024,
    check: ({ engine, upstream }) => {
      expect(engine.writeCalls).toEqual([1024]);
      expect(upstream.sent.length).toBe(1);
    },
  },
  {
    name: 'large array straight in',
    meaning: 'an array of a record or more goes to the engine without staging',
    iov: [40_000],
    expected: 40_000,
    check: ({ engine }) => {
      expect(engine.writeCalls).toEqual([40_000]);
    },
  },
  {
    name: 'small arrays fill a record before a large one',
    meaning: 'staging takes the head of the large array so the record is full',
    iov: [100, 100, 40_000],
    expected: 40_200,
    check: ({ engine }) => {
      expect(engine.writeCalls).toEqual([16_384, 40_200 - 16_384]);
    },
  },
  {
    name: 'short engine write',
    meaning: 'the engine takes part of the staging buffer; the rest is restaged and written',
    engineWrite: [30],
    iov: [50, 50],
    expected: 100,
    check: ({ engine }) => {
      expect(engine.writeCalls).toEqual([100, 70]);
      expect(engine.plaintext.length).toBe(100);
    },
  },
  {
    name: 'write after shutdown',
    meaning: 'shutdownWrite() ended our side: EPIPE',
    setup: ({ socket }) => socket.shutdownWrite(),
    iov: [10],
    expected: EPIPE,
  },
  {
    name: 'empty iovec',
    meaning: 'nothing to send: 0, and the engine is not called',
    iov: [],
    expected: 0,
    check: ({ engine, socket }) => {
      expect(socket.trySend([new Uint8Array(0), new Uint8Array(0)])).toBe(0);
      expect(engine.writeCalls.length).toBe(0);
    },
  },
];

describe('TlsSocket.trySend scenarios', () => {
  test.each(sendScenarios)('$name', async (row) => {
    const ctx = makeCtx();
    ctx.engine.done = row.handshakeDone ?? true;
    await row.setup?.(ctx);
    ctx.engine.writeScript = [...(row.engineWrite ?? [])];
    ctx.upstream.sendScript = [...(row.upstreamSend ?? [])];
    ctx.upstream.recvScript = [...(row.upstreamRecv ?? [])];

    const iov = row.iov.map((n, i) => bytes(n, i + 1));
    const result = ctx.socket.trySend(iov);
    expect(codeName(result), row.meaning).toBe(codeName(row.expected));
    expect(result, row.meaning).toBe(row.expected);
    if (row.stateSet !== undefined) {
      expect(ctx.socket.state & row.stateSet, stateOf(ctx.socket)).toBe(row.stateSet);
    }

    if (row.expectedNext !== undefined) {
      const consumed = Math.max(result, 0);
      const rest = iov.flatMap((a) => [...a]).slice(consumed);
      const next = rest.length > 0 ? Uint8Array.from(rest) : bytes(1);
      expect(codeName(ctx.socket.trySend([next]))).toBe(codeName(row.expectedNext));
    }
    await row.check?.(ctx);
    ctx.socket.close();
  });
});

interface RecvScenario {
  name: string;
  meaning: string;
  setup?: (ctx: Ctx) => Promise<void> | void;
  handshakeDone?: boolean;
  engineRead?: EngineStep[];
  upstreamSend?: SendStep[];
  upstreamRecv?: RecvStep[];
  expected: number;
  expectedNext?: number;
  stateSet?: number;
  check?: (ctx: Ctx) => Promise<void> | void;
}

const recvScenarios: RecvScenario[] = [
  {
    name: 'plaintext ready',
    meaning: 'a complete record is buffered: its bytes come back',
    engineRead: [50],
    expected: 50,
  },
  {
    name: 'NEED_READ with upstream EAGAIN',
    meaning: 'no complete record and no input: EAGAIN, and readable follows',
    expected: EAGAIN,
    check: async ({ upstream, events }) => {
      upstream.handler!.readable();
      await settle();
      expect(events).toEqual(['readable']);
    },
  },
  {
    name: 'NEED_READ with input available',
    meaning: 'input is pushed into the engine and the read goes on',
    engineRead: [NEED_READ, 30],
    upstreamRecv: [bytes(40)],
    expected: 30,
    check: ({ engine }) => {
      expect(engine.input.length).toBe(40);
    },
  },
  {
    name: 'NEED_READ with upstream end of stream',
    meaning: 'the transport ended without close_notify: truncation, ECONNRESET',
    engineRead: [NEED_READ, EOF_ABRUPT],
    upstreamRecv: [0],
    expected: ECONNRESET,
    expectedNext: ECONNRESET,
    check: ({ engine }) => {
      expect(engine.inputEof).toBe(true);
    },
  },
  {
    name: 'NEED_READ with an upstream error',
    meaning: 'the upstream read fails: its code comes back and stays',
    upstreamRecv: [EIO],
    expected: EIO,
    expectedNext: EIO,
  },
  {
    name: 'engine EOF_GRACEFUL on TLS 1.3',
    meaning: "the peer's close_notify: 0 now and later, and our direction stays open",
    engineRead: [EOF_GRACEFUL],
    expected: 0,
    expectedNext: 0,
    stateSet: PEER_CLOSED,
    check: ({ socket }) => {
      expect(socket.trySend([bytes(1)])).toBe(1);
    },
  },
  {
    name: 'engine EOF_GRACEFUL on TLS 1.2',
    meaning: "the peer's close_notify ends both directions (RFC 5246 section 7.2.1)",
    setup: ({ engine }) => {
      engine.version = 'TLSv1.2';
    },
    engineRead: [EOF_GRACEFUL],
    expected: 0,
    expectedNext: 0,
    stateSet: PEER_CLOSED | PEER_SHUT_WRITES,
    check: ({ socket }) => {
      expect(socket.trySend([bytes(1)])).toBe(EPIPE);
    },
  },
  {
    name: 'engine EOF_ABRUPT',
    meaning: 'a fatal alert or truncation: ECONNRESET',
    engineRead: [EOF_ABRUPT],
    expected: ECONNRESET,
    expectedNext: ECONNRESET,
  },
  {
    name: 'engine throws',
    meaning: 'a bad MAC: ECONNRESET for both directions, the error kept',
    engineRead: [new Error('decryption failed')],
    expected: ECONNRESET,
    check: ({ socket }) => {
      expect((socket.error as Error).message).toBe('decryption failed');
      expect(socket.trySend([bytes(1)])).toBe(ECONNRESET);
    },
  },
  {
    name: 'read conflict',
    meaning: 'a recv() owns the read side: tryRecv waits its turn',
    setup: async ({ socket }) => {
      socket.recv(new Uint8Array(64)).catch(() => undefined);
      await settle();
    },
    expected: EAGAIN,
    stateSet: RECEIVING,
  },
  {
    name: 'NEED_WRITE with upstream full',
    meaning: 'a KeyUpdate answer cannot leave: a detached flush starts, readable follows it',
    engineRead: [
      (e) => {
        e.queueOutput(200);
        return NEED_WRITE;
      },
      25,
    ],
    upstreamSend: [EAGAIN],
    expected: EAGAIN,
    stateSet: FLUSHING | READ_WAITS_WRITE,
    check: async ({ socket, upstream, tracker, events }) => {
      expect(tracker.running).toBe(1);
      upstream.handler!.writable();
      await settle();
      expect(tracker.running).toBe(0);
      expect(events).toContain('readable');
      expect(socket.tryRecv(new Uint8Array(64), 0, 64)).toBe(25);
    },
  },
  {
    name: 'NEED_WRITE with room upstream',
    meaning: 'the answer leaves at once and the read goes on',
    engineRead: [
      (e) => {
        e.queueOutput(200);
        return NEED_WRITE;
      },
      25,
    ],
    expected: 25,
    check: ({ upstream }) => {
      expect(upstream.sent).toEqual([200]);
    },
  },
  {
    name: 'plaintext with output left behind',
    meaning: 'a ticket the engine queued during the read goes out by a detached flush',
    engineRead: [
      (e) => {
        e.queueOutput(200);
        return 40;
      },
    ],
    upstreamSend: [100, EAGAIN],
    expected: 40,
    stateSet: FLUSHING,
  },
];

describe('TlsSocket.tryRecv scenarios', () => {
  test.each(recvScenarios)('$name', async (row) => {
    const ctx = makeCtx();
    ctx.engine.done = row.handshakeDone ?? true;
    await row.setup?.(ctx);
    ctx.engine.readScript = [...(row.engineRead ?? [])];
    ctx.upstream.sendScript = [...(row.upstreamSend ?? [])];
    ctx.upstream.recvScript = [...(row.upstreamRecv ?? [])];

    const dst = new Uint8Array(64);
    const result = ctx.socket.tryRecv(dst, 0, dst.byteLength);
    expect(codeName(result), row.meaning).toBe(codeName(row.expected));
    expect(result, row.meaning).toBe(row.expected);
    if (row.stateSet !== undefined) {
      expect(ctx.socket.state & row.stateSet, stateOf(ctx.socket)).toBe(row.stateSet);
    }
    if (row.expectedNext !== undefined) {
      expect(codeName(ctx.socket.tryRecv(dst, 0, dst.byteLength))).toBe(codeName(row.expectedNext));
    }
    await row.check?.(ctx);
    ctx.socket.close();
  });
});

describe('TlsSocket lifecycle with a fake engine', () => {
  test('close is idempotent and releases both', async () => {
    const ctx = makeCtx();
    const pending = ctx.socket.recv(new Uint8Array(8));
    await settle();
    ctx.socket.close();
    ctx.socket.close();
    expect(ctx.engine.destroyed).toBe(true);
    expect(ctx.upstream.closed).toBe(true);
    await expect(pending).rejects.toMatchObject({ code: 'ECANCELED' });
    expect(ctx.socket.trySend([bytes(1)])).toBe(-9);
  });

  test('shutdown waits for the detached flush', async () => {
    const ctx = makeCtx();
    ctx.upstream.sendScript = [50];
    expect(ctx.socket.trySend([bytes(100)])).toBe(100);

    const done = ctx.socket.shutdown();
    await settle();
    expect(ctx.upstream.writeShut).toBe(false);

    ctx.upstream.handler!.writable();
    await done;
    expect(ctx.upstream.sentBytes()).toBe(100 + FAKE_RECORD_OVERHEAD + 24);
    expect(ctx.upstream.writeShut).toBe(true);
    expect(ctx.tracker.running).toBe(0);
  });

  test('handshake timeout rejects with ETIMEDOUT', async () => {
    const engine = new FakeEngine();
    engine.done = false;
    engine.handshakeScript = Array.from({ length: 100 }, () => NEED_READ);
    const socket = new TlsSocket(new FakeUpstream(), engine, { handshakeTimeoutMs: 20 });
    await expect(socket.handshake()).rejects.toMatchObject({ code: 'ETIMEDOUT' });
    expect(socket.trySend([bytes(1)])).toBe(-110);
    socket.close();
  });

  test('send rejects with the engine error as cause', async () => {
    const ctx = makeCtx();
    const failure = new Error('unexpected message');
    ctx.engine.writeScript = [failure];
    await expect(ctx.socket.send([bytes(10)])).rejects.toMatchObject({
      code: 'ECONNRESET',
      cause: failure,
    });
    ctx.socket.close();
  });
});
