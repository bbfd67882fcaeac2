/**
 * The upstream: a shard's non-blocking view of one connection's byte stream.
 *
 * A TlsSocket writes ciphertext to its upstream and reads ciphertext from it. Upstreams exist for
 * a `net.Socket` (direct transport), for the SharedArrayBuffer rings (relay transport) and, in
 * tests, for an in-memory pipe.
 */
import type { IoVec } from '../shared/iovec.js';

/** Readiness callbacks that an upstream calls on its owner. */
export interface UpstreamHandler {
  /**
   * Called when bytes, the end of the stream or an error may be ready for `tryRecv`. It can be
   * spurious, so the owner calls `tryRecv` until it returns EAGAIN.
   */
  readable(): void;
  /** Called when `trySend` may accept bytes again after it returned EAGAIN or a short count. */
  writable(): void;
}

/** A non-blocking byte stream. No method waits, throws on a network fault, or returns a Promise. */
export interface Upstream {
  /**
   * Sends bytes from `iov` in order without waiting.
   *
   * Returns the bytes accepted (> 0, possibly fewer than offered), 0 for an empty iovec, EAGAIN
   * when no byte fits now (a `writable` callback follows), or a negative error code (EPIPE after
   * `shutdownWrite` or `close`, ECONNRESET, or the transport's own error). The upstream copies
   * what it accepts, so the caller may reuse its arrays at once.
   */
  trySend(iov: IoVec): number;

  /**
   * Receives up to `length` bytes into `dst` at `offset` without waiting.
   *
   * Returns the bytes read (> 0), 0 at the end of the stream, EAGAIN when nothing is buffered
   * (a `readable` callback follows), or a negative error code (ECONNRESET, EBADF after `close`).
   */
  tryRecv(dst: Uint8Array, offset: number, length: number): number;

  /** Installs the readiness callbacks. A later call replaces the earlier ones. */
  setHandler(handler: UpstreamHandler): void;

  /** Ends the write side (TCP FIN) once the bytes already accepted are sent. */
  shutdownWrite(): void;

  /** Closes both directions at once and releases the upstream's buffers. */
  close(): void;
}
