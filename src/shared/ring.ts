/**
 * A single-producer/single-consumer ring of records in a SharedArrayBuffer.
 *
 * One thread owns the `RingWriter` and one thread owns the `RingReader` of a ring. The data
 * region is a power of two in size and indexed with a mask. Head and tail are wrapping 32-bit byte
 * counters in the header (see layout.ts), and `(tail - head) | 0` is the number of bytes in use.
 *
 * Records are contiguous: a 16-byte header (connection id, kind, payload length, argument), the
 * payload, and padding up to a 16-byte boundary. A record never straddles the end of the data
 * region, because the writer fills that gap with a PAD record that the reader skips.
 *
 * Wake-ups never depend on a timer. Both sides use the same sequence, so the transition to
 * empty (or to full) cannot lose a wake-up:
 * - the waiting side sets its waiting flag, reloads the other side's counter, and only then calls
 *   `Atomics.waitAsync` with the value it saw, so a counter that moved in between makes the wait
 *   return at once;
 * - the publishing side stores its counter, then reads the other side's flag, and calls
 *   `Atomics.notify` only when the flag was set (it clears the flag, so a burst of writes
 *   notifies once).
 * All of these are sequentially consistent `Atomics` operations, so at least one side loads the
 * value that the other side stored.
 *
 * A pending `Atomics.waitAsync` does not keep a Node.js event loop alive (checked on Node 20.20),
 * so the owner of a ring keeps its thread alive by other means (a message port, a server).
 */
import type { IoVec } from './iovec.js';
import {
  CAPACITY_INDEX,
  CONSUMER_WAITING_INDEX,
  HEAD_INDEX,
  HEADER_BYTES,
  KIND_PAD,
  LAYOUT_VERSION,
  MAX_RECORD_PAYLOAD,
  MAX_RING_CAPACITY,
  MIN_RING_CAPACITY,
  PRODUCER_WAITING_INDEX,
  RECORD_ALIGN_MASK,
  RECORD_ARG_WORD,
  RECORD_CONN_ID_WORD,
  RECORD_HEADER_BYTES,
  RECORD_KIND_WORD,
  RECORD_LENGTH_WORD,
  TAIL_INDEX,
  VERSION_INDEX,
  DEFAULT_RING_CAPACITY,
} from './layout.js';

/**
 * Receives one record during `RingReader.drain`.
 *
 * `bytes` is the ring's whole data region and the payload is `bytes[offset, offset + length)`.
 * The view is only valid during the call, because the writer reuses the space afterwards, so a
 * handler copies what it keeps. A handler must not call `drain` on the same reader.
 */
export type RecordHandler = (
  connId: number,
  kind: number,
  arg: number,
  bytes: Uint8Array,
  offset: number,
  length: number,
) => void;

/** Copies under this many bytes go byte by byte, which avoids making a subarray view. */
const SMALL_COPY_BYTES = 64;

/**
 * Creates the SharedArrayBuffer of an empty ring with a data region of `capacity` bytes.
 *
 * Throws a RangeError when `capacity` is not a power of two between MIN_RING_CAPACITY and
 * MAX_RING_CAPACITY.
 */
export function createRingBuffer(capacity: number = DEFAULT_RING_CAPACITY): SharedArrayBuffer {
  const isPowerOfTwo =
    Number.isInteger(capacity) && capacity > 0 && (capacity & (capacity - 1)) === 0;
  if (!isPowerOfTwo || capacity < MIN_RING_CAPACITY || capacity > MAX_RING_CAPACITY) {
    throw new RangeError(
      `invalid ring capacity ${capacity}: use a power of two from ` +
        `${MIN_RING_CAPACITY} to ${MAX_RING_CAPACITY} bytes`,
    );
  }

  const sab = new SharedArrayBuffer(HEADER_BYTES + capacity);
  const words = new Int32Array(sab);
  words[CAPACITY_INDEX] = capacity;
  words[VERSION_INDEX] = LAYOUT_VERSION;
  return sab;
}

/**
 * Returns the bytes in use in a ring (records not yet released by the reader), from either side.
 */
export function ringUsedBytes(sab: SharedArrayBuffer): number {
  const words = new Int32Array(sab, 0, HEADER_BYTES >> 2);
  return (Atomics.load(words, TAIL_INDEX) - Atomics.load(words, HEAD_INDEX)) | 0;
}

/** Returns the data region size of a ring made by `createRingBuffer`. */
export function ringCapacity(sab: SharedArrayBuffer): number {
  return new Int32Array(sab, 0, HEADER_BYTES >> 2)[CAPACITY_INDEX];
}

/** Returns the bytes a record with a `length`-byte payload takes in the data region. */
export function recordSize(length: number): number {
  return RECORD_HEADER_BYTES + ((length + RECORD_ALIGN_MASK) & ~RECORD_ALIGN_MASK);
}

/**
 * Copies `length` bytes from `src` at `srcOffset` into `dst` at `dstOffset`.
 *
 * Short copies run byte by byte and whole-array copies pass `src` itself, so neither makes a
 * view. Other copies make one subarray view, which is the only allocation on the ring's paths.
 */
export function copyBytes(
  src: Uint8Array,
  srcOffset: number,
  dst: Uint8Array,
  dstOffset: number,
  length: number,
): void {
  if (length < SMALL_COPY_BYTES) {
    for (let i = 0; i < length; i++) dst[dstOffset + i] = src[srcOffset + i];
  } else if (srcOffset === 0 && length === src.byteLength) {
    dst.set(src, dstOffset);
  } else {
    dst.set(src.subarray(srcOffset, srcOffset + length), dstOffset);
  }
}

/** Checks a SharedArrayBuffer made by `createRingBuffer` and returns its capacity. */
function checkRing(sab: SharedArrayBuffer): number {
  if (!(sab instanceof SharedArrayBuffer) || sab.byteLength <= HEADER_BYTES) {
    throw new TypeError('invalid ring: expected a SharedArrayBuffer from createRingBuffer()');
  }

  const words = new Int32Array(sab, 0, HEADER_BYTES >> 2);
  const capacity = words[CAPACITY_INDEX];
  if (words[VERSION_INDEX] !== LAYOUT_VERSION || HEADER_BYTES + capacity !== sab.byteLength) {
    throw new TypeError(
      `invalid ring: layout version ${words[VERSION_INDEX]}, capacity ${capacity}, ` +
        `${sab.byteLength} bytes; expected version ${LAYOUT_VERSION}`,
    );
  }
  return capacity;
}

/** The producing side of a ring. Exactly one RingWriter may exist per ring. */
export class RingWriter {
  /** Data region size in bytes. */
  readonly capacity: number;

  private readonly words: Int32Array;
  private readonly data: Uint8Array;
  private readonly headers: Uint32Array;
  private readonly mask: number;
  private tail: number;
  private knownHead: number;
  private waiting = false;
  private closed = false;
  private onWritable: (() => void) | null = null;

  constructor(sab: SharedArrayBuffer) {
    this.capacity = checkRing(sab);
    this.words = new Int32Array(sab, 0, HEADER_BYTES >> 2);
    this.data = new Uint8Array(sab, HEADER_BYTES, this.capacity);
    this.headers = new Uint32Array(sab, HEADER_BYTES, this.capacity >> 2);
    this.mask = this.capacity - 1;
    this.tail = Atomics.load(this.words, TAIL_INDEX);
    this.knownHead = Atomics.load(this.words, HEAD_INDEX);
  }

  /**
   * Writes one record with `length` payload bytes from `src` at `offset`, and publishes it.
   *
   * Returns true when the record was written, false when the ring has no room for it now (call
   * `waitWritable` to learn when the reader frees space). Pass `src = null` with `length = 0` for
   * a record without payload. Throws a RangeError when `length` exceeds MAX_RECORD_PAYLOAD,
   * because that is a caller bug. Allocates nothing unless the copy needs a view (`copyBytes`).
   */
  tryWrite(
    connId: number,
    kind: number,
    arg: number,
    src: Uint8Array | null,
    offset: number,
    length: number,
  ): boolean {
    const pos = this.reserve(length);
    if (pos < 0) return false;

    if (src !== null && length > 0)
      copyBytes(src, offset, this.data, pos + RECORD_HEADER_BYTES, length);
    this.commit(pos, connId, kind, arg, length);
    return true;
  }

  /**
   * Writes one record whose payload is `length` bytes gathered from `iov`, starting at byte
   * `offset` of `iov[index]`, and publishes it.
   *
   * Returns true when written, false when the ring has no room now. Throws a RangeError when
   * `length` exceeds MAX_RECORD_PAYLOAD or the bytes from the start point. The caller keeps its
   * own cursor into `iov`.
   */
  tryWriteGather(
    connId: number,
    kind: number,
    arg: number,
    iov: IoVec,
    index: number,
    offset: number,
    length: number,
  ): boolean {
    const pos = this.reserve(length);
    if (pos < 0) return false;

    let dst = pos + RECORD_HEADER_BYTES;
    let left = length;
    while (left > 0) {
      if (index >= iov.length) throw new RangeError('gather length runs past the end of the iovec');
      const chunk = iov[index];
      const n = Math.min(left, chunk.byteLength - offset);
      copyBytes(chunk, offset, this.data, dst, n);
      dst += n;
      left -= n;
      index++;
      offset = 0;
    }

    this.commit(pos, connId, kind, arg, length);
    return true;
  }

  /** Returns the bytes in use in the ring as last seen by this writer (a lower bound of space). */
  usedBytes(): number {
    return (this.tail - Atomics.load(this.words, HEAD_INDEX)) | 0;
  }

  /**
   * Calls `callback` once after the reader releases space, asynchronously (never inside this
   * call). A later call before the callback ran replaces the callback. The callback only means
   * that space may be free, so the caller retries its write and waits again if it still fails.
   */
  waitWritable(callback: () => void): void {
    this.onWritable = callback;
    if (this.waiting || this.closed) return;
    this.waiting = true;

    // Arm first, then look: the reader checks this flag after every release of space.
    Atomics.store(this.words, PRODUCER_WAITING_INDEX, 1);
    const head = Atomics.load(this.words, HEAD_INDEX);
    if (head !== this.knownHead) {
      this.knownHead = head;
      queueMicrotask(this.wake);
      return;
    }

    const result = Atomics.waitAsync(this.words, HEAD_INDEX, head);
    if (result.async) {
      void result.value.then(this.wake);
    } else {
      queueMicrotask(this.wake);
    }
  }

  /** Drops a pending `waitWritable` callback and stops waiting. The ring itself is not changed. */
  close(): void {
    this.closed = true;
    this.onWritable = null;
    if (this.waiting) Atomics.notify(this.words, HEAD_INDEX);
  }

  private readonly wake = (): void => {
    this.waiting = false;
    const callback = this.onWritable;
    this.onWritable = null;
    if (callback !== null && !this.closed) callback();
  };

  /**
   * Finds room for a record of `length` payload bytes, writing a PAD record first when the
   * record does not fit before the end of the data region. Returns the record's data offset, or
   * -1 when the ring has no room.
   */
  private reserve(length: number): number {
    if (length > MAX_RECORD_PAYLOAD || length < 0) {
      throw new RangeError(`record payload of ${length} bytes exceeds ${MAX_RECORD_PAYLOAD}`);
    }

    const size = recordSize(length);
    const pos = this.tail & this.mask;
    const contiguous = this.capacity - pos;
    const needed = contiguous < size ? contiguous + size : size;

    if (this.capacity - ((this.tail - this.knownHead) | 0) < needed) {
      this.knownHead = Atomics.load(this.words, HEAD_INDEX);
      if (this.capacity - ((this.tail - this.knownHead) | 0) < needed) return -1;
    }

    if (contiguous >= size) return pos;

    // The gap before the end is a multiple of 16 bytes, so a PAD header always fits in it.
    const word = pos >> 2;
    this.headers[word + RECORD_CONN_ID_WORD] = 0;
    this.headers[word + RECORD_KIND_WORD] = KIND_PAD;
    this.headers[word + RECORD_LENGTH_WORD] = contiguous - RECORD_HEADER_BYTES;
    this.headers[word + RECORD_ARG_WORD] = 0;
    this.tail = (this.tail + contiguous) | 0;
    return 0;
  }

  /** Writes the header of the record reserved at `pos`, publishes the tail and wakes the reader. */
  private commit(pos: number, connId: number, kind: number, arg: number, length: number): void {
    const word = pos >> 2;
    this.headers[word + RECORD_CONN_ID_WORD] = connId;
    this.headers[word + RECORD_KIND_WORD] = kind;
    this.headers[word + RECORD_LENGTH_WORD] = length;
    this.headers[word + RECORD_ARG_WORD] = arg;
    this.tail = (this.tail + recordSize(length)) | 0;

    // Publish, then look at the reader's flag: the order that makes a lost wake-up impossible.
    Atomics.store(this.words, TAIL_INDEX, this.tail);
    if (
      Atomics.load(this.words, CONSUMER_WAITING_INDEX) !== 0 &&
      Atomics.exchange(this.words, CONSUMER_WAITING_INDEX, 0) !== 0
    ) {
      Atomics.notify(this.words, TAIL_INDEX, 1);
    }
  }
}

/** The consuming side of a ring. Exactly one RingReader may exist per ring. */
export class RingReader {
  /** Data region size in bytes. */
  readonly capacity: number;

  private readonly words: Int32Array;
  private readonly data: Uint8Array;
  private readonly headers: Uint32Array;
  private readonly mask: number;
  private readonly releaseEvery: number;
  private head: number;
  private handler: RecordHandler | null = null;
  private afterDrain: (() => void) | null = null;
  private running = false;
  private waiting = false;

  constructor(sab: SharedArrayBuffer) {
    this.capacity = checkRing(sab);
    this.words = new Int32Array(sab, 0, HEADER_BYTES >> 2);
    this.data = new Uint8Array(sab, HEADER_BYTES, this.capacity);
    this.headers = new Uint32Array(sab, HEADER_BYTES, this.capacity >> 2);
    this.mask = this.capacity - 1;
    this.releaseEvery = this.capacity >> 2;
    this.head = Atomics.load(this.words, HEAD_INDEX);
  }

  /**
   * Hands every record published so far to `handler`, in order, and releases their space.
   *
   * Returns the number of records handed over (PAD records are skipped and not counted).
   * Records published during the call wait for the next call. Space is released every quarter of
   * the capacity, so a writer in another thread can go on during a long drain. When `handler`
   * throws, the records before it and the one it threw on are consumed and the error propagates.
   */
  drain(handler: RecordHandler): number {
    const tail = Atomics.load(this.words, TAIL_INDEX);
    let head = this.head;
    let records = 0;
    let unreleased = 0;

    try {
      while (head !== tail) {
        const pos = head & this.mask;
        const word = pos >> 2;
        const kind = this.headers[word + RECORD_KIND_WORD];
        const length = this.headers[word + RECORD_LENGTH_WORD];
        const size = recordSize(length);
        head = (head + size) | 0;

        if (kind !== KIND_PAD) {
          records++;
          handler(
            this.headers[word + RECORD_CONN_ID_WORD],
            kind,
            this.headers[word + RECORD_ARG_WORD],
            this.data,
            pos + RECORD_HEADER_BYTES,
            length,
          );
        }

        unreleased += size;
        if (unreleased >= this.releaseEvery) {
          this.release(head);
          unreleased = 0;
        }
      }
    } finally {
      if (head !== this.head) this.release(head);
    }
    return records;
  }

  /** Returns the bytes in use in the ring (published and not yet released). */
  usedBytes(): number {
    return (Atomics.load(this.words, TAIL_INDEX) - this.head) | 0;
  }

  /**
   * Starts the read loop: drains the ring into `handler` whenever records are published, then
   * calls `afterDrain` (if given) once per batch. Waits with `Atomics.waitAsync`, so the thread's
   * event loop stays free. After a batch that left more records behind, it yields with
   * `setImmediate` before the next batch so other I/O of the thread can run.
   *
   * Throws an Error when the loop is already running. An exception from `handler` or
   * `afterDrain` stops the loop and is rethrown from the event loop turn that ran it.
   */
  start(handler: RecordHandler, afterDrain?: () => void): void {
    if (this.running) throw new Error('ring reader is already started');
    this.handler = handler;
    this.afterDrain = afterDrain ?? null;
    this.running = true;
    if (!this.waiting) this.run();
  }

  /** Stops the read loop. Records already published stay in the ring for a later `start`. */
  stop(): void {
    if (!this.running) return;
    this.running = false;
    this.handler = null;
    this.afterDrain = null;
    if (this.waiting) Atomics.notify(this.words, TAIL_INDEX);
  }

  private readonly run = (): void => {
    this.waiting = false;
    const handler = this.handler;
    if (!this.running || handler === null) return;

    let ok = false;
    try {
      this.drain(handler);
      if (this.afterDrain !== null) this.afterDrain();
      ok = true;
    } finally {
      if (!ok) this.stop();
    }
    if (!this.running) return;

    // Arm first, then look: the writer checks this flag after every publish.
    Atomics.store(this.words, CONSUMER_WAITING_INDEX, 1);
    const tail = Atomics.load(this.words, TAIL_INDEX);
    if (tail !== this.head) {
      Atomics.store(this.words, CONSUMER_WAITING_INDEX, 0);
      this.waiting = true;
      setImmediate(this.run);
      return;
    }

    this.waiting = true;
    const result = Atomics.waitAsync(this.words, TAIL_INDEX, tail);
    if (result.async) {
      void result.value.then(this.run);
    } else {
      setImmediate(this.run);
    }
  };

  /** Stores the new head and wakes a writer that waits for space. */
  private release(head: number): void {
    this.head = head;
    Atomics.store(this.words, HEAD_INDEX, head);
    if (
      Atomics.load(this.words, PRODUCER_WAITING_INDEX) !== 0 &&
      Atomics.exchange(this.words, PRODUCER_WAITING_INDEX, 0) !== 0
    ) {
      Atomics.notify(this.words, HEAD_INDEX, 1);
    }
  }
}

/** Ring helpers under one name, for callers that create and inspect rings. */
export const Ring = {
  /** See `createRingBuffer`. */
  create: createRingBuffer,
  /** See `ringUsedBytes`. */
  usedBytes: ringUsedBytes,
  /** See `ringCapacity`. */
  capacity: ringCapacity,
} as const;
