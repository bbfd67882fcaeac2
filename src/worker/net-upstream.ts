/**
 * The direct transport's upstream: a `net.Socket` with the non-blocking `Upstream` contract.
 *
 * Node's socket API is push-based (`'data'` events, `write()` that always queues). This adapter
 * turns it into `trySend` / `tryRecv`:
 *
 * - reads are queued as the chunks Node delivers, up to `readBufferBytes`; past that the socket is
 *   paused, so a handler that stops reading stops the peer through TCP flow control;
 * - writes are accepted while the socket's own queue (`writableLength`) is below `writeBudget`;
 *   past that `trySend` returns a short count or EAGAIN, and `writable` follows on `'drain'`.
 */
import type { Socket } from 'node:net';

import { EAGAIN, EBADF, ECONNRESET, EPIPE } from '../shared/codes.js';
import { closeAfterPeer } from '../shared/linger.js';
import type { IoVec } from '../shared/iovec.js';
import type { Upstream, UpstreamHandler } from '../tls/upstream.js';

/** Sizing of a `NetUpstream`. */
export interface NetUpstreamOptions {
  /** Bytes queued in the kernel-bound write queue before `trySend` pushes back. */
  writeBudget?: number;
  /** Bytes read ahead of `tryRecv` before the socket is paused. */
  readBufferBytes?: number;
}

const DEFAULT_WRITE_BUDGET = 64 * 1024;
const DEFAULT_READ_BUFFER = 64 * 1024;

const IGNORE: UpstreamHandler = { readable() {}, writable() {} };

/** A `net.Socket` seen through the `Upstream` contract. */
export class NetUpstream implements Upstream {
  /** Ciphertext bytes received and sent, for the shard's stats. */
  bytesIn = 0;
  bytesOut = 0;

  private readonly socket: Socket;
  private readonly writeBudget: number;
  private readonly readBufferBytes: number;
  private handler: UpstreamHandler = IGNORE;

  private readonly chunks: Buffer[] = [];
  private chunkOffset = 0;
  private buffered = 0;
  private ended = false;
  private error = 0;
  private closed = false;
  private writeShut = false;
  private wantWritable = false;
  private released: Promise<void> = Promise.resolve();

  constructor(socket: Socket, options: NetUpstreamOptions = {}) {
    this.socket = socket;
    this.writeBudget = options.writeBudget ?? DEFAULT_WRITE_BUDGET;
    this.readBufferBytes = options.readBufferBytes ?? DEFAULT_READ_BUFFER;

    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => {
      this.ended = true;
      this.handler.readable();
    });
    socket.on('error', () => {
      // The code is what the TlsSocket needs; the socket's error object stays with Node.
      this.error = ECONNRESET;
      this.handler.readable();
      this.handler.writable();
    });
    socket.on('close', () => {
      if (!this.ended && this.error === 0) this.error = ECONNRESET;
      this.handler.readable();
      this.handler.writable();
    });
    socket.on('drain', () => {
      if (!this.wantWritable) return;
      this.wantWritable = false;
      this.handler.writable();
    });
  }

  /** The socket under this upstream, for the peer address and for tests. */
  get netSocket(): Socket {
    return this.socket;
  }

  setHandler(handler: UpstreamHandler): void {
    this.handler = handler;
  }

  /**
   * Copies as much of `iov` as the write budget allows into one buffer and queues it.
   *
   * Returns bytes accepted, 0 for an empty iovec, EAGAIN when the budget is used up (`writable`
   * follows on `'drain'`), EPIPE after `shutdownWrite`, EBADF after `close`, ECONNRESET after a
   * socket error.
   */
  trySend(iov: IoVec): number {
    if (this.closed) return EBADF;
    if (this.error !== 0) return this.error;
    if (this.writeShut) return EPIPE;

    let total = 0;
    for (let i = 0; i < iov.length; i++) total += iov[i].byteLength;
    if (total === 0) return 0;

    const room = this.writeBudget - this.socket.writableLength;
    if (room <= 0) {
      this.wantWritable = true;
      return EAGAIN;
    }

    // One copy per call: the caller reuses its arrays, and Node keeps the buffer until written.
    const n = total < room ? total : room;
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    for (let i = 0; i < iov.length && at < n; i++) {
      const piece = iov[i];
      const take = Math.min(piece.byteLength, n - at);
      out.set(take === piece.byteLength ? piece : piece.subarray(0, take), at);
      at += take;
    }

    this.socket.write(out);
    this.bytesOut += n;
    if (n < total) this.wantWritable = true;
    return n;
  }

  /**
   * Copies buffered bytes into `dst`.
   *
   * Returns bytes read, 0 at the end of the stream (after all buffered bytes), EAGAIN when nothing
   * is buffered (`readable` follows), ECONNRESET after a socket error, EBADF after `close`.
   */
  tryRecv(dst: Uint8Array, offset: number, length: number): number {
    if (this.closed) return EBADF;

    if (this.buffered === 0) {
      if (this.error !== 0) return this.error;
      return this.ended ? 0 : EAGAIN;
    }

    let copied = 0;
    while (copied < length && this.chunks.length > 0) {
      const chunk = this.chunks[0];
      const available = chunk.byteLength - this.chunkOffset;
      const take = Math.min(available, length - copied);
      dst.set(chunk.subarray(this.chunkOffset, this.chunkOffset + take), offset + copied);
      copied += take;

      if (take === available) {
        this.chunks.shift();
        this.chunkOffset = 0;
      } else {
        this.chunkOffset += take;
      }
    }

    this.buffered -= copied;
    this.bytesIn += copied;
    if (this.socket.isPaused() && this.buffered < this.readBufferBytes / 2 && !this.ended) {
      this.socket.resume();
    }
    return copied;
  }

  shutdownWrite(): void {
    if (this.writeShut || this.closed) return;
    this.writeShut = true;
    this.socket.end();
  }

  /**
   * Releases the upstream at once. After an error the socket is destroyed; otherwise the bytes
   * already accepted still leave, then FIN, and input is dropped until the peer's FIN (see
   * `closeAfterPeer`), so the peer reads everything instead of meeting a reset.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.chunks.length = 0;
    this.buffered = 0;
    if (this.error !== 0) {
      this.socket.destroy();
      return;
    }
    this.released = closeAfterPeer(this.socket);
  }

  /** Resolves once the socket has closed after `close()` (bounded by LINGER_MS). */
  whenReleased(): Promise<void> {
    return this.released;
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return; // a closing socket drops its input
    this.chunks.push(chunk);
    this.buffered += chunk.byteLength;
    if (this.buffered >= this.readBufferBytes) this.socket.pause();
    this.handler.readable();
  }
}
