/**
 * The shard side of the relay transport: connections carried over a pair of rings.
 *
 * A `RingEndpoint` reads the rx ring (main → shard) and demultiplexes its records by connection
 * id into `RingSocket`s, which implement `Upstream`, so a TlsSocket runs on a RingSocket as it
 * runs on a net.Socket. Every RingSocket of the shard writes to the one tx ring (shard → main).
 *
 * Flow control (see credit.ts): the main thread sends at most the rx window per connection
 * before this side grants CREDIT back, so a RingSocket buffers at most one window. `trySend`
 * writes at most the tx credit the main thread granted, so a client that stops reading stops its
 * own connection and no other.
 */
import { ECONNRESET, EAGAIN, EBADF, EPIPE } from '../shared/codes.js';
import { ReceiveWindow, SendCredit, checkWindow } from '../shared/credit.js';
import type { IoVec } from '../shared/iovec.js';
import { iovLength } from '../shared/iovec.js';
import {
  CLOSE_NORMAL,
  CLOSE_RESET,
  KIND_CLOSE,
  KIND_CREDIT,
  KIND_DATA,
  KIND_END,
  KIND_OPEN,
  MAX_RECORD_PAYLOAD,
  MAX_WINDOW,
  decodeOpenPayload,
} from '../shared/layout.js';
import type { PeerAddress } from '../shared/messages.js';
import { RingReader, RingWriter, copyBytes } from '../shared/ring.js';
import type { Upstream, UpstreamHandler } from '../tls/upstream.js';

/** Options of a RingEndpoint. */
export interface RingEndpointOptions {
  /**
   * Called for each new connection, before any of its data is delivered. The callee installs a
   * handler with `socket.setHandler`. An exception stops the endpoint's read loop.
   */
  onOpen(socket: RingSocket, peer: PeerAddress): void;
  /**
   * Largest rx window (bytes) an OPEN may request this side to buffer per connection. A
   * connection that requests more is closed with a reset. Default MAX_WINDOW.
   */
  creditBytes?: number;
}

/** Bytes in use and capacity of the two rings of an endpoint. */
export interface RingOccupancy {
  /** Bytes in use in the rx ring (main → shard). */
  rxUsed: number;
  /** Bytes in use in the tx ring (shard → main). */
  txUsed: number;
  /** Data region size of each ring. */
  capacity: number;
}

/** Smallest receive buffer a RingSocket allocates; it doubles up to its window. */
const MIN_RECEIVE_BUFFER = 4096;

/** Returns the smallest power of two >= n (n <= 2^30). */
function nextPowerOfTwo(n: number): number {
  let size = 1;
  while (size < n) size *= 2;
  return size;
}

/** One relayed connection on the shard side. */
export class RingSocket implements Upstream {
  /** Connection id, the same on both sides of the rings. */
  readonly connId: number;
  /** Bytes received from the main thread (ciphertext in). */
  bytesIn = 0;
  /** Bytes accepted by `trySend` (ciphertext out). */
  bytesOut = 0;

  /** @internal Receive window and credit of the two directions. */
  readonly rxWindow: ReceiveWindow;
  /** @internal */
  readonly txCredit: SendCredit;
  /** @internal A `writable` call is owed after a short or EAGAIN trySend. */
  wantWritable = false;
  /** @internal The socket is on the endpoint's list of sockets to notify after a batch. */
  readablePending = false;
  /** @internal */
  writablePending = false;
  /** @internal The socket is on the endpoint's list of sockets that found the tx ring full. */
  blockedOnRing = false;
  /** @internal The main thread sent END: no more data after the buffered bytes. */
  remoteEnded = false;
  /** @internal The main thread closed the connection, with a `CLOSE_*` reason. */
  remoteClosed = false;
  /** @internal */
  reset = false;

  private readonly endpoint: RingEndpoint;
  private handler: UpstreamHandler | null = null;
  private buffer: Uint8Array | null = null;
  private bufferStart = 0;
  private writeShut = false;
  private closed = false;

  /** @internal Made by RingEndpoint for each OPEN record. */
  constructor(endpoint: RingEndpoint, connId: number, rxWindow: number, txWindow: number) {
    this.endpoint = endpoint;
    this.connId = connId;
    this.rxWindow = new ReceiveWindow(rxWindow);
    this.txCredit = new SendCredit(txWindow);
  }

  /**
   * Writes bytes from `iov` as DATA records to the tx ring, without waiting.
   *
   * Returns the bytes accepted (> 0, possibly fewer than offered), 0 for an empty iovec, EAGAIN
   * when the connection has no tx credit or the ring has no room (a `writable` callback follows
   * when either frees up), EPIPE after `shutdownWrite` or after the main thread closed the
   * connection normally, ECONNRESET after a reset, or EBADF after `close`.
   */
  trySend(iov: IoVec): number {
    if (this.closed) return EBADF;
    if (this.reset) return ECONNRESET;
    if (this.writeShut || this.remoteClosed) return EPIPE;

    const total = iovLength(iov);
    if (total === 0) return 0;

    let sent = 0;
    let index = 0;
    let offset = 0;
    while (sent < total) {
      const n = Math.min(total - sent, this.txCredit.available, MAX_RECORD_PAYLOAD);
      if (n === 0) break;
      if (!this.endpoint.writeData(this, iov, index, offset, n)) break;

      this.txCredit.spend(n);
      sent += n;

      // Move the cursor n bytes forward.
      offset += n;
      while (index < iov.length && offset >= iov[index].byteLength) {
        offset -= iov[index].byteLength;
        index++;
      }
    }

    this.bytesOut += sent;
    if (sent < total) this.wantWritable = true;
    return sent > 0 ? sent : EAGAIN;
  }

  /**
   * Copies up to `length` buffered bytes into `dst` at `offset`, without waiting.
   *
   * Returns the bytes read (> 0), 0 after the main thread's END (or a normal CLOSE) once the
   * buffered bytes are read, EAGAIN when nothing is buffered (a `readable` callback follows),
   * ECONNRESET after a reset (buffered bytes are dropped), or EBADF after `close`. Consumed bytes
   * return to the main thread as CREDIT once half the window is consumed. Throws a RangeError
   * when `length` is not positive, because that is a caller bug.
   */
  tryRecv(dst: Uint8Array, offset: number, length: number): number {
    if (length <= 0) throw new RangeError(`tryRecv length must be positive, got ${length}`);
    if (this.closed) return EBADF;
    if (this.reset) return ECONNRESET;

    const buffered = this.rxWindow.buffered;
    if (buffered === 0) return this.remoteEnded || this.remoteClosed ? 0 : EAGAIN;

    // Copy out of the circular buffer in at most two pieces.
    const buffer = this.buffer!;
    const n = Math.min(length, buffered);
    const first = Math.min(n, buffer.byteLength - this.bufferStart);
    copyBytes(buffer, this.bufferStart, dst, offset, first);
    if (first < n) copyBytes(buffer, 0, dst, offset + first, n - first);
    this.bufferStart = (this.bufferStart + n) & (buffer.byteLength - 1);

    const grant = this.rxWindow.consume(n);
    if (grant > 0) this.endpoint.writeControl(this.connId, KIND_CREDIT, grant);
    return n;
  }

  /** Installs the readiness callbacks. A later call replaces the earlier ones. */
  setHandler(handler: UpstreamHandler): void {
    this.handler = handler;
  }

  /**
   * Sends END once: the main thread ends the client socket's write side after the bytes
   * already accepted. Later `trySend` calls return EPIPE.
   */
  shutdownWrite(): void {
    if (this.writeShut || this.closed || this.reset) return;
    this.writeShut = true;
    if (!this.remoteClosed) this.endpoint.writeControl(this.connId, KIND_END, 0);
  }

  /**
   * Closes the connection and frees its buffer. After `shutdownWrite`, the main thread still
   * sends the bytes already accepted and then closes the client socket. Without it, the client
   * socket is destroyed at once. Later calls return EBADF.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.buffer = null;
    this.wantWritable = false;
    const reason = this.writeShut ? CLOSE_NORMAL : CLOSE_RESET;
    this.endpoint.forget(this, !this.remoteClosed && !this.reset, reason);
  }

  /** @internal Appends the DATA payload at `bytes[offset, offset + length)` to the buffer. */
  receive(bytes: Uint8Array, offset: number, length: number): boolean {
    if (this.closed || this.reset || this.remoteEnded) return true;
    if (!this.rxWindow.receive(length)) return false;

    this.bytesIn += length;
    const used = this.rxWindow.buffered;
    const before = used - length;
    let buffer = this.buffer;
    if (buffer === null || buffer.byteLength < used) buffer = this.grow(before, used);

    // Write after the buffered bytes. The buffer has room for the whole window, so one wrap
    // at most.
    const mask = buffer.byteLength - 1;
    const end = (this.bufferStart + before) & mask;
    const first = Math.min(length, buffer.byteLength - end);
    copyBytes(bytes, offset, buffer, end, first);
    if (first < length) copyBytes(bytes, offset + first, buffer, 0, length - first);
    return true;
  }

  /** @internal Calls the handler's `readable`. */
  notifyReadable(): void {
    this.readablePending = false;
    if (this.handler !== null && !this.closed) this.handler.readable();
  }

  /** @internal Calls the handler's `writable` once after a short or EAGAIN trySend. */
  notifyWritable(): void {
    this.writablePending = false;
    if (!this.wantWritable || this.closed) return;
    this.wantWritable = false;
    if (this.handler !== null) this.handler.writable();
  }

  /** Replaces the buffer with one of room for `needed` bytes, keeping the first `kept` bytes. */
  private grow(kept: number, needed: number): Uint8Array {
    const size = Math.max(MIN_RECEIVE_BUFFER, nextPowerOfTwo(needed));
    const buffer = new Uint8Array(size);
    const old = this.buffer;
    if (old !== null && kept > 0) {
      const first = Math.min(kept, old.byteLength - this.bufferStart);
      copyBytes(old, this.bufferStart, buffer, 0, first);
      if (first < kept) copyBytes(old, 0, buffer, first, kept - first);
    }
    this.buffer = buffer;
    this.bufferStart = 0;
    return buffer;
  }
}

/** A control record that waits for room in the tx ring. */
interface QueuedControl {
  connId: number;
  kind: number;
  arg: number;
}

/** The shard side of one pair of rings: many RingSockets over one rx and one tx ring. */
export class RingEndpoint {
  private readonly reader: RingReader;
  private readonly writer: RingWriter;
  private readonly onOpen: (socket: RingSocket, peer: PeerAddress) => void;
  private readonly maxWindow: number;
  private readonly sockets = new Map<number, RingSocket>();

  // Sockets to call back after the current batch of rx records, reused between batches.
  private readonly ready: RingSocket[] = [];
  // Sockets whose trySend found the tx ring full.
  private readonly blocked: RingSocket[] = [];
  // Control records (END, CLOSE, CREDIT) that found the tx ring full, in order.
  private readonly controls: QueuedControl[] = [];
  private waitingForRoom = false;
  private closed = false;

  /**
   * Starts reading `rx` (main → shard) and writing `tx` (shard → main), two rings made by
   * `createRingBuffer`. Throws a TypeError when either is not a ring, or a RangeError when
   * `options.creditBytes` is out of range.
   */
  constructor(rx: SharedArrayBuffer, tx: SharedArrayBuffer, options: RingEndpointOptions) {
    this.reader = new RingReader(rx);
    this.writer = new RingWriter(tx);
    this.onOpen = options.onOpen;
    this.maxWindow = checkWindow(options.creditBytes ?? MAX_WINDOW, 'creditBytes');
    this.reader.start(this.onRecord, this.afterBatch);
  }

  /** Number of connections open on this endpoint. */
  get size(): number {
    return this.sockets.size;
  }

  /** Returns the bytes in use and the capacity of the two rings. */
  occupancy(): RingOccupancy {
    return {
      rxUsed: this.reader.usedBytes(),
      txUsed: this.writer.usedBytes(),
      capacity: this.reader.capacity,
    };
  }

  /**
   * Stops reading and writing, and open RingSockets return ECONNRESET. No record is sent, so
   * the main thread closes its side itself (RelayPump.close).
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.reader.stop();
    this.writer.close();
    for (const socket of this.sockets.values()) {
      socket.reset = true;
      socket.notifyReadable();
    }
    this.sockets.clear();
  }

  /** @internal Writes one DATA record for `socket`. Returns false when the tx ring is full. */
  writeData(socket: RingSocket, iov: IoVec, index: number, offset: number, n: number): boolean {
    if (this.writer.tryWriteGather(socket.connId, KIND_DATA, 0, iov, index, offset, n)) return true;
    if (!socket.blockedOnRing) {
      socket.blockedOnRing = true;
      this.blocked.push(socket);
    }
    this.waitForRoom();
    return false;
  }

  /** @internal Writes a record without payload, or queues it while the tx ring is full. */
  writeControl(connId: number, kind: number, arg: number): void {
    if (this.closed) return;
    if (this.controls.length === 0 && this.writer.tryWrite(connId, kind, arg, null, 0, 0)) return;
    this.controls.push({ connId, kind, arg });
    this.waitForRoom();
  }

  /** @internal Drops a closed socket, and sends CLOSE when the main thread still has it. */
  forget(socket: RingSocket, sendClose: boolean, reason: number): void {
    if (this.sockets.get(socket.connId) !== socket) return;
    this.sockets.delete(socket.connId);
    if (sendClose) this.writeControl(socket.connId, KIND_CLOSE, reason);
  }

  private waitForRoom(): void {
    if (this.waitingForRoom || this.closed) return;
    this.waitingForRoom = true;
    this.writer.waitWritable(this.onRoom);
  }

  /** Flushes queued control records, then calls `writable` on the sockets that found it full. */
  private readonly onRoom = (): void => {
    this.waitingForRoom = false;
    const controls = this.controls;
    let sent = 0;
    while (sent < controls.length) {
      const control = controls[sent];
      if (!this.writer.tryWrite(control.connId, control.kind, control.arg, null, 0, 0)) break;
      sent++;
    }
    controls.splice(0, sent);
    if (controls.length > 0) {
      this.waitForRoom();
      return;
    }

    const blocked = this.blocked.splice(0, this.blocked.length);
    for (const socket of blocked) {
      socket.blockedOnRing = false;
      socket.notifyWritable();
    }
  };

  private readonly onRecord = (
    connId: number,
    kind: number,
    arg: number,
    bytes: Uint8Array,
    offset: number,
    length: number,
  ): void => {
    if (kind === KIND_OPEN) {
      this.open(connId, bytes, offset, length);
      return;
    }

    const socket = this.sockets.get(connId);
    if (socket === undefined) return; // A record that crossed our CLOSE: the connection is gone.

    if (kind === KIND_DATA) {
      if (!socket.receive(bytes, offset, length)) {
        // The main thread sent beyond the window it announced: a broken peer, so reset.
        socket.reset = true;
        this.forget(socket, true, CLOSE_RESET);
      }
      this.markReadable(socket);
    } else if (kind === KIND_END) {
      socket.remoteEnded = true;
      this.markReadable(socket);
    } else if (kind === KIND_CLOSE) {
      if (arg === CLOSE_NORMAL) socket.remoteClosed = true;
      else socket.reset = true;
      this.sockets.delete(connId);
      this.markReadable(socket);
      this.markWritable(socket);
    } else if (kind === KIND_CREDIT) {
      socket.txCredit.grant(arg);
      this.markWritable(socket);
    }
  };

  private open(connId: number, bytes: Uint8Array, offset: number, length: number): void {
    const payload = decodeOpenPayload(bytes, offset, length);
    const valid =
      payload !== null &&
      !this.sockets.has(connId) &&
      payload.rxWindow > 0 &&
      payload.rxWindow <= this.maxWindow &&
      payload.txWindow > 0;
    if (!valid) {
      this.writeControl(connId, KIND_CLOSE, CLOSE_RESET);
      return;
    }

    const socket = new RingSocket(this, connId, payload.rxWindow, payload.txWindow);
    this.sockets.set(connId, socket);
    const peer: PeerAddress = {
      address: payload.address,
      port: payload.port,
      family: payload.family,
    };
    this.onOpen(socket, peer);
  }

  private markReadable(socket: RingSocket): void {
    if (socket.readablePending) return;
    socket.readablePending = true;
    this.ready.push(socket);
  }

  private markWritable(socket: RingSocket): void {
    if (socket.writablePending || !socket.wantWritable) return;
    socket.writablePending = true;
    this.ready.push(socket);
  }

  /** Calls back every socket that got records in the batch, once each. */
  private readonly afterBatch = (): void => {
    const ready = this.ready;
    for (let i = 0; i < ready.length; i++) {
      const socket = ready[i];
      if (socket.readablePending) socket.notifyReadable();
      if (socket.writablePending) socket.notifyWritable();
    }
    ready.length = 0;
  };
}
