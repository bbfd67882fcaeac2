/**
 * The in-memory pipe under the TlsSocket tests: bounded buffering, end of stream, close, and
 * readiness callbacks that arrive later, never from inside the call that caused them.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';

import { describe, expect, test } from 'vitest';

import { EAGAIN, EBADF, ECONNRESET, EPIPE } from '../src/shared/codes.js';
import { createMemoryPipe } from '../src/tls/memory-pipe.js';

function recorder(): { events: string[]; handler: { readable(): void; writable(): void } } {
  const events: string[] = [];
  return {
    events,
    handler: {
      readable: () => events.push('readable'),
      writable: () => events.push('writable'),
    },
  };
}

describe('memory pipe', () => {
  test('short write then EAGAIN', () => {
    const { a } = createMemoryPipe(10);
    expect(a.trySend([new Uint8Array(6), new Uint8Array(6)])).toBe(10);
    expect(a.trySend([new Uint8Array(1)])).toBe(EAGAIN);
    expect(a.trySend([])).toBe(0);
    expect(a.sent.writes).toBe(1);
    expect(a.sent.bytes).toBe(10);
  });

  test('bytes arrive in order across the wrap', () => {
    const { a, b } = createMemoryPipe(7);
    const dst = new Uint8Array(16);
    expect(a.trySend([Uint8Array.of(1, 2, 3, 4, 5)])).toBe(5);
    expect(b.tryRecv(dst, 0, 3)).toBe(3);
    expect(a.trySend([Uint8Array.of(6, 7, 8, 9, 10)])).toBe(5);
    expect(b.tryRecv(dst, 3, 13)).toBe(7);
    expect([...dst.subarray(0, 10)]).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(b.tryRecv(dst, 0, 16)).toBe(EAGAIN);
  });

  test('callbacks are asynchronous and coalesced', async () => {
    const { a, b } = createMemoryPipe(4);
    const writer = recorder();
    const reader = recorder();
    a.setHandler(writer.handler);
    b.setHandler(reader.handler);

    expect(b.tryRecv(new Uint8Array(4), 0, 4)).toBe(EAGAIN);
    expect(a.trySend([new Uint8Array(2)])).toBe(2);
    expect(a.trySend([new Uint8Array(4)])).toBe(2);
    expect(reader.events).toEqual([]);
    await nextTurn();
    expect(reader.events).toEqual(['readable']);

    expect(b.tryRecv(new Uint8Array(4), 0, 1)).toBe(1);
    expect(b.tryRecv(new Uint8Array(4), 0, 1)).toBe(1);
    expect(writer.events).toEqual([]);
    await nextTurn();
    expect(writer.events).toEqual(['writable']);
  });

  test('shutdownWrite reads 0 after the data', () => {
    const { a, b } = createMemoryPipe(8);
    a.trySend([new Uint8Array(3)]);
    a.shutdownWrite();
    expect(a.trySend([new Uint8Array(1)])).toBe(EPIPE);
    expect(b.tryRecv(new Uint8Array(8), 0, 8)).toBe(3);
    expect(b.tryRecv(new Uint8Array(8), 0, 8)).toBe(0);
    expect(b.trySend([new Uint8Array(1)])).toBe(1);
  });

  test('close reads ECONNRESET after the data', () => {
    const { a, b } = createMemoryPipe(8);
    a.trySend([new Uint8Array(3)]);
    a.close();
    expect(b.tryRecv(new Uint8Array(8), 0, 8)).toBe(3);
    expect(b.tryRecv(new Uint8Array(8), 0, 8)).toBe(ECONNRESET);
    expect(b.trySend([new Uint8Array(1)])).toBe(EPIPE);
    expect(a.trySend([new Uint8Array(1)])).toBe(EBADF);
    expect(a.tryRecv(new Uint8Array(8), 0, 8)).toBe(EBADF);
  });

  test('record counter splits headers across writes', () => {
    const { a } = createMemoryPipe(64);
    // Two records: application_data with 3 bytes, handshake with 1 byte, fed byte by byte.
    const stream = Uint8Array.of(23, 3, 3, 0, 3, 9, 9, 9, 22, 3, 3, 0, 1, 9);
    for (const byte of stream) a.trySend([Uint8Array.of(byte)]);
    expect(a.sent.records).toBe(2);
    expect(a.sent.applicationDataRecords).toBe(1);
  });

  test('invalid capacity throws', () => {
    expect(() => createMemoryPipe(0)).toThrow(RangeError);
  });
});
