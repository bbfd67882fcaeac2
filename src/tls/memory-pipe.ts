/**
 * An in-memory pair of connected upstreams with bounded buffering, for tests and benchmarks.
 *
 * Each direction has a ring buffer of `capacity` bytes, so a writer meets short writes and EAGAIN
 * exactly as it would on a socket whose send buffer is full. Readiness callbacks are delivered
 * from `setImmediate`, coalesced per endpoint, and never from inside `trySend` or `tryRecv`.
 * `setImmediate` (not a microtask) lets timers and I/O run between hops, so a ping-pong between
 * two endpoints cannot starve the event loop.
 */
import { EAGAIN, EBADF, ECONNRESET, EPIPE } from '../shared/codes.js';
import type { IoVec } from '../shared/iovec.js';
import type { Upstream, UpstreamHandler } from './upstream.js';

/** TLS record header length: content type, legacy version, length (RFC 8446 section 5.1). */
const RECORD_HEADER_LENGTH = 5;

/** TLS content type of application data records (RFC 8446 section 5.1). */
const CONTENT_TYPE_APPLICATION_DATA = 23;

/** Counters of one direction of a memory pipe, as seen by the writing endpoint. */
export interface PipeDirectionStats {
  /** `trySend` calls that moved at least one byte. */
  writes: number;
  /** Bytes accepted by `trySend`. */
  bytes: number;
  /** Complete TLS records seen in the byte stream, of any content type. */
  records: number;
  /** Complete TLS records of content type application_data (23). */
  applicationDataRecords: number;
}

/**
 * Parses TLS record headers out of a byte stream as it passes, without buffering payloads.
 *
 * It assumes the stream is TLS records from its first byte, which holds for a TlsSocket's
 * ciphertext. The counts are test diagnostics: a stream that is not TLS gives meaningless counts.
 */
class RecordCounter {
  private readonly header = new Uint8Array(RECORD_HEADER_LENGTH);
  private headerFill = 0;
  private payloadLeft = 0;

  constructor(private readonly stats: PipeDirectionStats) {}

  feed(bytes: Uint8Array, offset: number, length: number): void {
    const end = offset + length;
    let i = offset;
    while (i < end) {
      if (this.payloadLeft > 0) {
        const skip = Math.min(this.payloadLeft, end - i);
        this.payloadLeft -= skip;
        i += skip;
        continue;
      }

      this.header[this.headerFill++] = bytes[i++];
      if (this.headerFill < RECORD_HEADER_LENGTH) continue;

      this.headerFill = 0;
      this.payloadLeft = (this.header[3] << 8) | this.header[4];
      this.stats.records++;
      if (this.header[0] === CONTENT_TYPE_APPLICATION_DATA) this.stats.applicationDataRecords++;
    }
  }
}

/** One direction: a byte ring written by one endpoint and read by the other. */
class Channel {
  readonly buffer: Uint8Array;
  head = 0;
  size = 0;
  /** The writer called `shutdownWrite`: the reader gets 0 after the buffered bytes. */
  writeShut = false;
  /** The writer called `close`: the reader gets ECONNRESET after the buffered bytes. */
  reset = false;
  readonly stats: PipeDirectionStats = {
    writes: 0,
    bytes: 0,
    records: 0,
    applicationDataRecords: 0,
  };
  readonly records = new RecordCounter(this.stats);

  constructor(capacity: number) {
    this.buffer = new Uint8Array(capacity);
  }
}

const NOTIFY_READABLE = 1;
const NOTIFY_WRITABLE = 2;

/**
 * One endpoint of a memory pipe: writes go to `tx`, reads come from `rx`.
 */
export class MemoryPipeEnd implements Upstream {
  private handler: UpstreamHandler | null = null;
  private closed = false;
  private pendingNotify = 0;
  private notifyScheduled = false;
  private peer!: MemoryPipeEnd;
  /** Set after an EAGAIN from `trySend` or a short write, so `writable` follows. */
  private wantWritable = false;
  /** Set after an EAGAIN from `tryRecv`, so `readable` follows. */
  private wantReadable = false;
  private readonly deliver = (): void => this.deliverNotifications();

  constructor(
    private readonly tx: Channel,
    private readonly rx: Channel,
  ) {}

  /** Counters of the bytes this endpoint wrote. */
  get sent(): PipeDirectionStats {
    return this.tx.stats;
  }

  /** Counters of the bytes written toward this endpoint. */
  get received(): PipeDirectionStats {
    return this.rx.stats;
  }

  /** Links the two endpoints so each can wake the other. */
  connect(peer: MemoryPipeEnd): void {
    this.peer = peer;
  }

  /**
   * Copies as many bytes of `iov` as fit into the ring toward the peer.
   *
   * Returns the bytes accepted, which may be fewer than offered (then `writable` follows). It
   * returns 0 for an empty iovec, EAGAIN when the ring is full (`writable` follows), EPIPE after
   * `shutdownWrite` or after the peer closed, or EBADF after this endpoint's `close`.
   */
  trySend(iov: IoVec): number {
    if (this.closed) return EBADF;
    if (this.tx.writeShut || this.rx.reset) return EPIPE;

    const channel = this.tx;
    const capacity = channel.buffer.byteLength;
    let accepted = 0;
    let offered = 0;
    for (let i = 0; i < iov.length; i++) {
      const src = iov[i];
      offered += src.byteLength;
      let srcOffset = 0;
      while (srcOffset < src.byteLength && channel.size < capacity) {
        const tail = (channel.head + channel.size) % capacity;
        const run = Math.min(src.byteLength - srcOffset, capacity - channel.size, capacity - tail);
        channel.buffer.set(src.subarray(srcOffset, srcOffset + run), tail);
        channel.records.feed(src, srcOffset, run);
        channel.size += run;
        srcOffset += run;
        accepted += run;
      }
    }

    if (offered === 0) return 0;
    if (accepted < offered) this.wantWritable = true;
    if (accepted === 0) return EAGAIN;

    channel.stats.writes++;
    channel.stats.bytes += accepted;
    this.peer.notify(NOTIFY_READABLE);
    return accepted;
  }

  /**
   * Copies up to `length` buffered bytes from the peer into `dst` at `offset`.
   *
   * Returns the bytes read (> 0), 0 once the peer called `shutdownWrite` and the buffered bytes
   * are read, ECONNRESET once the peer closed and the buffered bytes are read, EAGAIN when nothing
   * is buffered (`readable` follows), or EBADF after this endpoint's `close`.
   */
  tryRecv(dst: Uint8Array, offset: number, length: number): number {
    if (this.closed) return EBADF;

    const channel = this.rx;
    if (channel.size === 0) {
      if (channel.reset) return ECONNRESET;
      if (channel.writeShut) return 0;
      this.wantReadable = true;
      return EAGAIN;
    }

    const capacity = channel.buffer.byteLength;
    let copied = 0;
    while (copied < length && channel.size > 0) {
      const run = Math.min(length - copied, channel.size, capacity - channel.head);
      dst.set(channel.buffer.subarray(channel.head, channel.head + run), offset + copied);
      channel.head = (channel.head + run) % capacity;
      channel.size -= run;
      copied += run;
    }

    this.peer.notify(NOTIFY_WRITABLE);
    return copied;
  }

  /** Installs the readiness callbacks. */
  setHandler(handler: UpstreamHandler): void {
    this.handler = handler;
  }

  /** Ends this endpoint's write side: the peer reads the buffered bytes, then 0. */
  shutdownWrite(): void {
    if (this.closed || this.tx.writeShut) return;
    this.tx.writeShut = true;
    this.peer.notify(NOTIFY_READABLE);
  }

  /**
   * Closes both directions at once. The peer reads the bytes already buffered toward it and then
   * gets ECONNRESET (a TCP reset would drop those bytes), and its `trySend` returns EPIPE.
   * Idempotent.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.tx.reset = true;
    this.handler = null;
    this.peer.notify(NOTIFY_READABLE | NOTIFY_WRITABLE);
  }

  /** Schedules readiness callbacks on this endpoint, coalesced into one `setImmediate`. */
  private notify(kinds: number): void {
    if (this.closed) return;
    if ((kinds & NOTIFY_READABLE) !== 0 && !this.wantReadable && !this.rx.reset) {
      kinds &= ~NOTIFY_READABLE;
    }
    if ((kinds & NOTIFY_WRITABLE) !== 0 && !this.wantWritable && !this.rx.reset) {
      kinds &= ~NOTIFY_WRITABLE;
    }
    if (kinds === 0) return;

    this.pendingNotify |= kinds;
    if (this.notifyScheduled) return;
    this.notifyScheduled = true;
    setImmediate(this.deliver);
  }

  private deliverNotifications(): void {
    this.notifyScheduled = false;
    const kinds = this.pendingNotify;
    this.pendingNotify = 0;
    const handler = this.handler;
    if (this.closed || handler === null) return;

    if ((kinds & NOTIFY_WRITABLE) !== 0) {
      this.wantWritable = false;
      handler.writable();
    }
    if ((kinds & NOTIFY_READABLE) !== 0) {
      this.wantReadable = false;
      handler.readable();
    }
  }
}

/** Two connected endpoints of a memory pipe. */
export interface MemoryPipe {
  a: MemoryPipeEnd;
  b: MemoryPipeEnd;
}

/**
 * Creates two connected in-memory upstreams with `capacity` bytes of buffering per direction.
 *
 * Throws a RangeError when `capacity` is not a positive integer, because that is a caller bug.
 */
export function createMemoryPipe(capacity: number): MemoryPipe {
  if (!Number.isInteger(capacity) || capacity < 1) {
    throw new RangeError(`memory pipe capacity must be a positive integer, got ${capacity}`);
  }

  const aToB = new Channel(capacity);
  const bToA = new Channel(capacity);
  const a = new MemoryPipeEnd(aToB, bToA);
  const b = new MemoryPipeEnd(bToA, aToB);
  a.connect(b);
  b.connect(a);
  return { a, b };
}
