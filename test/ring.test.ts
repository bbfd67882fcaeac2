import { Worker } from 'node:worker_threads';

import fc from 'fast-check';
import { describe, expect, test } from 'vitest';

import {
  KIND_CLOSE,
  KIND_CREDIT,
  KIND_DATA,
  KIND_END,
  KIND_OPEN,
  MAX_RECORD_PAYLOAD,
  MIN_RING_CAPACITY,
  decodeOpenPayload,
  encodeOpenPayload,
  OPEN_MAX_PAYLOAD,
} from '../src/shared/layout.js';
import {
  RingReader,
  RingWriter,
  createRingBuffer,
  recordSize,
  ringCapacity,
  ringUsedBytes,
} from '../src/shared/ring.js';

interface SeenRecord {
  connId: number;
  kind: number;
  arg: number;
  payload: number[];
}

/** Drains `reader` and returns copies of the records it handed over. */
function drainAll(reader: RingReader): SeenRecord[] {
  const seen: SeenRecord[] = [];
  reader.drain((connId, kind, arg, bytes, offset, length) => {
    seen.push({ connId, kind, arg, payload: Array.from(bytes.subarray(offset, offset + length)) });
  });
  return seen;
}

/** A pattern of pseudo-random bytes that payloads are cut from. */
const PATTERN = Uint8Array.from({ length: 2 * MAX_RECORD_PAYLOAD }, (_, i) => (i * 151 + 7) & 255);

/** Independent model of the ring's byte accounting: positions, PAD records, room. */
class RingModel {
  tail = 0;
  head = 0;
  readonly queue: SeenRecord[] = [];

  constructor(readonly capacity: number) {}

  write(record: SeenRecord): boolean {
    const size = recordSize(record.payload.length);
    const contiguous = this.capacity - (this.tail % this.capacity);
    const needed = contiguous < size ? contiguous + size : size;
    if (this.capacity - (this.tail - this.head) < needed) return false;

    this.tail += needed;
    this.queue.push(record);
    return true;
  }

  drain(): SeenRecord[] {
    this.head = this.tail;
    return this.queue.splice(0, this.queue.length);
  }
}

const writeOp = fc.record({
  type: fc.constant('write' as const),
  connId: fc.nat({ max: 0xffffffff }),
  kind: fc.constantFrom(KIND_OPEN, KIND_DATA, KIND_END, KIND_CLOSE, KIND_CREDIT),
  arg: fc.nat({ max: 0xffffffff }),
  length: fc.oneof(
    fc.integer({ min: 0, max: 64 }),
    fc.integer({ min: 0, max: MAX_RECORD_PAYLOAD }),
    fc.constant(MAX_RECORD_PAYLOAD),
    fc.constant(0),
  ),
  offset: fc.nat({ max: MAX_RECORD_PAYLOAD }),
});
const drainOp = fc.record({ type: fc.constant('drain' as const) });

describe('ring, one thread', () => {
  test('matches an array model', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof({ arbitrary: writeOp, weight: 5 }, { arbitrary: drainOp, weight: 1 }), {
          maxLength: 300,
        }),
        (ops) => {
          const sab = createRingBuffer(MIN_RING_CAPACITY);
          const writer = new RingWriter(sab);
          const reader = new RingReader(sab);
          const model = new RingModel(MIN_RING_CAPACITY);

          for (const op of ops) {
            if (op.type === 'drain') {
              expect(drainAll(reader)).toEqual(model.drain());
            } else {
              const { connId, kind, arg, length, offset } = op;
              const payload = Array.from(PATTERN.subarray(offset, offset + length));
              const expected = model.write({ connId, kind, arg, payload });
              expect(writer.tryWrite(connId, kind, arg, PATTERN, offset, length)).toBe(expected);
            }
            expect(ringUsedBytes(sab)).toBe(model.tail - model.head);
          }

          expect(drainAll(reader)).toEqual(model.drain());
          expect(ringUsedBytes(sab)).toBe(0);
        },
      ),
      { numRuns: 200 },
    );
  });

  test('wraps around many times', () => {
    const sab = createRingBuffer(MIN_RING_CAPACITY);
    const writer = new RingWriter(sab);
    const reader = new RingReader(sab);

    // 1000-byte payloads never divide the capacity, so writes hit the PAD path at every lap.
    const length = 1000;
    let written = 0;
    let read = 0;
    for (let lap = 0; lap < 200; lap++) {
      while (writer.tryWrite(written, KIND_DATA, 0, PATTERN, written % 997, length)) written++;
      reader.drain((connId, kind, _arg, bytes, offset, n) => {
        expect(connId).toBe(read);
        expect(kind).toBe(KIND_DATA);
        expect(n).toBe(length);
        expect(bytes[offset]).toBe(PATTERN[read % 997]);
        expect(bytes[offset + n - 1]).toBe(PATTERN[(read % 997) + n - 1]);
        read++;
      });
    }

    expect(read).toBe(written);
    expect(written).toBeGreaterThan((200 * MIN_RING_CAPACITY) / recordSize(length) - 200);
    expect(ringUsedBytes(sab)).toBe(0);
  });

  test('carries max-size and zero-length records', () => {
    const sab = createRingBuffer(MIN_RING_CAPACITY);
    const writer = new RingWriter(sab);
    const reader = new RingReader(sab);

    expect(writer.tryWrite(1, KIND_DATA, 0, PATTERN, 3, MAX_RECORD_PAYLOAD)).toBe(true);
    expect(writer.tryWrite(2, KIND_END, 0, null, 0, 0)).toBe(true);
    expect(writer.tryWrite(3, KIND_CREDIT, 0xffffffff, null, 0, 0)).toBe(true);

    const seen = drainAll(reader);
    expect(seen.map((r) => r.connId)).toEqual([1, 2, 3]);
    expect(seen[0].payload).toEqual(Array.from(PATTERN.subarray(3, 3 + MAX_RECORD_PAYLOAD)));
    expect(seen[1].payload).toEqual([]);
    expect(seen[2].arg).toBe(0xffffffff);
  });

  test('rejects oversized records and bad rings', () => {
    const sab = createRingBuffer(MIN_RING_CAPACITY);
    const writer = new RingWriter(sab);

    expect(() => writer.tryWrite(1, KIND_DATA, 0, PATTERN, 0, MAX_RECORD_PAYLOAD + 1)).toThrow(
      RangeError,
    );
    expect(() => createRingBuffer(MIN_RING_CAPACITY + 16)).toThrow(RangeError);
    expect(() => createRingBuffer(MIN_RING_CAPACITY / 2)).toThrow(RangeError);
    expect(() => new RingReader(new SharedArrayBuffer(4096))).toThrow(TypeError);
    expect(ringCapacity(sab)).toBe(MIN_RING_CAPACITY);
  });

  test('gathers a payload from an iovec', () => {
    const sab = createRingBuffer(MIN_RING_CAPACITY);
    const writer = new RingWriter(sab);
    const reader = new RingReader(sab);
    const iov = [Uint8Array.of(1, 2, 3), new Uint8Array(0), Uint8Array.of(4, 5), Uint8Array.of(6)];

    expect(writer.tryWriteGather(9, KIND_DATA, 0, iov, 0, 1, 4)).toBe(true);
    expect(() => writer.tryWriteGather(9, KIND_DATA, 0, iov, 2, 0, 4)).toThrow(RangeError);

    const seen = drainAll(reader);
    expect(seen).toHaveLength(1);
    expect(seen[0].payload).toEqual([2, 3, 4, 5]);
  });

  test('wakes the reader on the empty transition', async () => {
    const sab = createRingBuffer(MIN_RING_CAPACITY);
    const writer = new RingWriter(sab);
    const reader = new RingReader(sab);
    const seen: number[] = [];
    let batches = 0;
    let wake: () => void = () => {};
    const twoRecords = new Promise<void>((resolve) => (wake = resolve));

    reader.start(
      (connId) => seen.push(connId),
      () => {
        batches++;
        if (seen.length === 2) wake();
      },
    );
    // Let the reader find the ring empty and wait on it.
    await new Promise((resolve) => setImmediate(resolve));
    expect(seen).toEqual([]);

    writer.tryWrite(7, KIND_DATA, 0, null, 0, 0);
    writer.tryWrite(8, KIND_DATA, 0, null, 0, 0);
    await twoRecords;
    reader.stop();

    expect(seen).toEqual([7, 8]);
    expect(batches).toBeGreaterThanOrEqual(1);
  });

  test('wakes the writer on the full transition', async () => {
    const sab = createRingBuffer(MIN_RING_CAPACITY);
    const writer = new RingWriter(sab);
    const reader = new RingReader(sab);

    let written = 0;
    while (writer.tryWrite(written, KIND_DATA, 0, PATTERN, 0, 4000)) written++;
    expect(written).toBe(Math.floor(MIN_RING_CAPACITY / recordSize(4000)));

    let woken = 0;
    const room = new Promise<void>((resolve) =>
      writer.waitWritable(() => {
        woken++;
        resolve();
      }),
    );
    await new Promise((resolve) => setImmediate(resolve));
    expect(woken).toBe(0);

    expect(drainAll(reader)).toHaveLength(written);
    await room;
    expect(woken).toBe(1);
    expect(writer.tryWrite(written, KIND_DATA, 0, PATTERN, 0, 4000)).toBe(true);
  });

  test('calls waitWritable back when room came before it', async () => {
    const sab = createRingBuffer(MIN_RING_CAPACITY);
    const writer = new RingWriter(sab);
    const reader = new RingReader(sab);
    while (writer.tryWrite(1, KIND_DATA, 0, PATTERN, 0, 4000));

    // The reader frees space between the failed write and the wait.
    drainAll(reader);
    await new Promise<void>((resolve) => writer.waitWritable(resolve));
    expect(writer.tryWrite(1, KIND_DATA, 0, PATTERN, 0, 4000)).toBe(true);
  });

  test('encodes and decodes OPEN payloads', () => {
    const buffer = new Uint8Array(OPEN_MAX_PAYLOAD);
    const open = { address: '::1', port: 54321, family: 'IPv6', rxWindow: 65536, txWindow: 4096 };
    const length = encodeOpenPayload(buffer, open);

    expect(decodeOpenPayload(buffer, 0, length)).toEqual(open);
    expect(decodeOpenPayload(buffer, 0, length - 1)).toBeNull();
    expect(decodeOpenPayload(buffer, 0, 3)).toBeNull();
  });
});

interface PeerResult {
  received: number;
  errors: number;
  checksum: number;
  sentChecksum: number;
  waits: number;
}

interface PeerModule {
  produce(writer: RingWriter, count: number, seed: number): Promise<PeerResult>;
  consume(reader: RingReader, count: number, seed: number, slow?: boolean): Promise<PeerResult>;
}

const PEER_URL = new URL('./fixtures/ring-peer.mjs', import.meta.url);

/** Runs the peer fixture in a worker and resolves with the result it posts. */
function runWorker(data: object): { worker: Worker; result: Promise<PeerResult> } {
  const worker = new Worker(PEER_URL, { workerData: data });
  const result = new Promise<PeerResult>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`ring peer exited with code ${code}`)));
  });
  return { worker, result };
}

describe('ring, two threads', () => {
  test('carries 1,000,000 records both ways', { timeout: 180_000 }, async () => {
    const count = 1_000_000;
    const seed = 12345;
    const toWorker = createRingBuffer(1 << 20);
    const fromWorker = createRingBuffer(1 << 20);
    const peer = (await import(PEER_URL.href)) as PeerModule;

    const { worker, result } = runWorker({
      rx: toWorker,
      tx: fromWorker,
      count,
      seed,
      slow: false,
    });
    try {
      const [sent, read, remote] = await Promise.all([
        peer.produce(new RingWriter(toWorker), count, seed + 1),
        peer.consume(new RingReader(fromWorker), count, seed),
        result,
      ]);

      expect(read.received).toBe(count);
      expect(read.errors).toBe(0);
      expect(read.checksum).toBe(remote.sentChecksum);
      expect(remote.received).toBe(count);
      expect(remote.errors).toBe(0);
      expect(remote.checksum).toBe(sent.sentChecksum);
      expect(ringUsedBytes(toWorker)).toBe(0);
      expect(ringUsedBytes(fromWorker)).toBe(0);
    } finally {
      await worker.terminate();
    }
  });

  test('slow consumer makes the producer wait', { timeout: 180_000 }, async () => {
    const count = 100_000;
    const seed = 777;
    const toWorker = createRingBuffer(MIN_RING_CAPACITY);
    const fromWorker = createRingBuffer(MIN_RING_CAPACITY);
    const peer = (await import(PEER_URL.href)) as PeerModule;

    const { worker, result } = runWorker({ rx: toWorker, tx: fromWorker, count, seed, slow: true });
    try {
      const [sent, read, remote] = await Promise.all([
        peer.produce(new RingWriter(toWorker), count, seed + 1),
        peer.consume(new RingReader(fromWorker), count, seed),
        result,
      ]);

      expect(sent.waits).toBeGreaterThan(0);
      expect(remote.received).toBe(count);
      expect(remote.errors).toBe(0);
      expect(remote.checksum).toBe(sent.sentChecksum);
      expect(read.errors).toBe(0);
      expect(read.checksum).toBe(remote.sentChecksum);
    } finally {
      await worker.terminate();
    }
  });
});
