/**
 * TlsSocket: one TLS connection over a non-blocking upstream, with a plaintext Upstream side.
 *
 * Its own Upstream side is the plaintext side, so code written for an Upstream can run over TLS
 * and a TlsSocket can be stacked. The non-blocking `trySend` / `tryRecv` come from
 * TlsSocketCore. The async `handshake`, `send`, `recv` and `shutdown` here are loops over the
 * same steps, parked on the same readiness events.
 */
import {
  EAGAIN,
  ECANCELED,
  EPIPE,
  ETIMEDOUT,
  NEED_READ,
  NEED_WRITE,
  codeError,
} from '../shared/codes.js';
import { type IoVec, iovAdvance, iovIsEmpty, iovLength } from '../shared/iovec.js';
import type { TlsEngine } from './engine.js';
import type { FlushTracker } from './flush-tracker.js';
import { NOTIFY_READABLE, NOTIFY_WRITABLE, TlsSocketCore } from './tls-socket-core.js';
import {
  CLOSED,
  FLUSHING,
  HANDSHAKE_DONE,
  HANDSHAKING,
  RECEIVING,
  SENDING,
  SHUTDOWN_FLUSHED,
  isWriteShut,
} from './tls-socket-state.js';
import type { Upstream } from './upstream.js';

export { FlushTracker } from './flush-tracker.js';
export { MAX_RECORD_PLAINTEXT } from './tls-socket-core.js';

/** Options of a TlsSocket. */
export interface TlsSocketOptions {
  /** Rejects `handshake()` with ETIMEDOUT when it has not completed within this many ms. */
  handshakeTimeoutMs?: number;
  /** The owner's counter of detached flushes, so it can wait until all of them have ended. */
  flushes?: FlushTracker;
}

/** One TLS connection over an upstream, with a plaintext Upstream interface of its own. */
export class TlsSocket extends TlsSocketCore {
  private readonly handshakeTimeoutMs: number;
  private handshakePromise: Promise<void> | null = null;
  private handshakeTimedOut = false;
  private handshakeTimer: ReturnType<typeof setTimeout> | null = null;
  private sendQueue: Promise<unknown> = Promise.resolve();
  private recvQueue: Promise<unknown> = Promise.resolve();

  constructor(upstream: Upstream, engine: TlsEngine, options: TlsSocketOptions = {}) {
    super(upstream, engine, options.flushes ?? null);
    this.handshakeTimeoutMs = options.handshakeTimeoutMs ?? 0;
  }

  /**
   * Releases the engine (`engine.destroy`) and closes the upstream at once. Ciphertext still
   * pending is dropped, so call `shutdown()` first for a graceful end. Pending async calls
   * reject with ECANCELED, and a running detached flush ends. Idempotent.
   */
  override close(): void {
    this.clearHandshakeTimer();
    super.close();
  }

  /**
   * Completes the handshake. Resolves at once when it is already done; concurrent calls share
   * one run. Rejects with ETIMEDOUT after `handshakeTimeoutMs` (the caller then closes the
   * socket), ECONNRESET when the engine fails (its error is the `cause`) or the upstream ends,
   * the upstream's error code, or ECANCELED after `close()`.
   */
  handshake(): Promise<void> {
    if ((this.stateBits & HANDSHAKE_DONE) !== 0) return Promise.resolve();
    this.handshakePromise ??= this.runHandshake();
    return this.handshakePromise;
  }

  /**
   * Sends all of `iov` and resolves once it is consumed and its ciphertext flushed to the
   * upstream. Concurrent calls run one after another in call order. Rejects with EPIPE,
   * ECONNRESET (the engine's error is the `cause`), the upstream's error code, or ECANCELED
   * after `close()`.
   */
  send(iov: IoVec): Promise<void> {
    const run = this.sendQueue.then(() => this.runSend(iov));
    this.sendQueue = run.catch(() => undefined);
    return run;
  }

  /**
   * Reads plaintext into `dst` and resolves with the byte count, or 0 after the peer's
   * close_notify. Concurrent calls run one after another. Rejects with ECONNRESET (truncation or
   * a protocol error, the engine's error as `cause`), the upstream's error code, or ECANCELED
   * after `close()`.
   */
  recv(dst: Uint8Array): Promise<number> {
    const run = this.recvQueue.then(() => this.runRecv(dst));
    this.recvQueue = run.catch(() => undefined);
    return run;
  }

  /**
   * Ends our write side gracefully: waits for `send()` calls and the detached flush, then sends
   * close_notify and flushes it, and shuts the upstream's write side. Reading goes on until the
   * peer's close_notify. Rejects with the write side's error code, or ECANCELED after `close()`.
   */
  async shutdown(): Promise<void> {
    await this.sendQueue;
    this.shutdownWrite();

    while ((this.stateBits & SHUTDOWN_FLUSHED) === 0) {
      if ((this.stateBits & CLOSED) !== 0) throw codeError(ECANCELED, 'socket closed');
      if (this.writeError !== 0) throw this.errorFor(this.writeError, 'shutdown failed');
      await this.waitWritable();
    }
    // EPIPE means only that the peer closed first. Any other error may have cut our data short.
    if (this.writeError !== 0 && this.writeError !== EPIPE) {
      throw this.errorFor(this.writeError, 'shutdown failed');
    }
  }

  // ---- async API: loops over the same steps ----

  private async runHandshake(): Promise<void> {
    this.stateBits |= HANDSHAKING;
    if (this.handshakeTimeoutMs > 0) {
      this.handshakeTimer = setTimeout(() => {
        this.handshakeTimedOut = true;
        this.wakeWaiters();
      }, this.handshakeTimeoutMs);
    }

    try {
      for (;;) {
        this.checkHandshakeAlive();
        const result = this.engineHandshake();

        // Whatever the step produced goes out before we wait for the peer's reply.
        const pending = this.flushOutput();
        if (pending < 0) throw this.errorFor(this.failWrite(pending), 'handshake failed');
        if (result === 1) {
          // What is left (a server's session tickets, RFC 8446 section 4.6.1) needs no reply, so
          // a detached flush sends it and the handshake resolves without waiting for the reader.
          this.stateBits |= HANDSHAKE_DONE;
          if (pending > 0 && (this.stateBits & FLUSHING) === 0) this.startDetachedFlush();
          return;
        }
        if (pending > 0) {
          await this.waitWritable();
          continue;
        }

        if (result === NEED_WRITE) continue;
        if (result === NEED_READ) {
          const pulled = this.pullInput();
          if (pulled === EAGAIN) await this.waitReadable();
          else if (pulled < 0) throw this.errorFor(this.failRead(pulled), 'handshake failed');
          continue;
        }

        throw this.errorFor(this.engineResultToError(result), 'handshake failed');
      }
    } finally {
      this.stateBits &= ~HANDSHAKING;
      this.clearHandshakeTimer();
      this.handshakePromise = null;
      this.schedule(NOTIFY_READABLE | NOTIFY_WRITABLE);
    }
  }

  private checkHandshakeAlive(): void {
    if ((this.stateBits & CLOSED) !== 0) throw codeError(ECANCELED, 'socket closed');
    if (this.handshakeTimedOut) {
      this.failWrite(ETIMEDOUT);
      this.failRead(ETIMEDOUT);
      throw codeError(
        ETIMEDOUT,
        `TLS handshake timed out after ${this.handshakeTimeoutMs} ms`,
        this.failure,
      );
    }
  }

  private clearHandshakeTimer(): void {
    if (this.handshakeTimer === null) return;
    clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
  }

  private async runSend(iov: IoVec): Promise<void> {
    if (this.handshakePromise !== null) await this.handshakePromise;
    this.stateBits |= SENDING;

    try {
      let rest: IoVec = iov;
      while (!iovIsEmpty(rest)) {
        if ((this.stateBits & CLOSED) !== 0) throw codeError(ECANCELED, 'socket closed');
        if (this.writeError !== 0) throw this.errorFor(this.writeError, 'send failed');
        if (isWriteShut(this.stateBits)) throw codeError(EPIPE, 'send after shutdown');
        if ((this.stateBits & FLUSHING) !== 0) {
          await this.waitWritable();
          continue;
        }

        const result = this.sendStep(rest, iovLength(rest));
        if (result > 0) rest = iovAdvance(rest, result);
        else if (result === EAGAIN) await this.waitWritable();
        else throw this.errorFor(result, 'send failed');
      }

      // The last step may have left ciphertext to a detached flush: resolve once it is out.
      while ((this.stateBits & FLUSHING) !== 0) {
        if ((this.stateBits & CLOSED) !== 0) throw codeError(ECANCELED, 'socket closed');
        await this.waitWritable();
      }
      if (this.writeError !== 0) throw this.errorFor(this.writeError, 'send failed');
    } finally {
      this.stateBits &= ~SENDING;
      if ((this.stateBits & CLOSED) === 0) {
        this.progressShutdown();
        this.schedule(NOTIFY_WRITABLE);
      }
    }
  }

  private async runRecv(dst: Uint8Array): Promise<number> {
    if (dst.byteLength === 0) throw new RangeError('recv() needs a buffer of at least one byte');
    if (this.handshakePromise !== null) await this.handshakePromise;
    this.stateBits |= RECEIVING;

    try {
      for (;;) {
        if ((this.stateBits & CLOSED) !== 0) throw codeError(ECANCELED, 'socket closed');
        const result = this.recvStep(dst, 0, dst.byteLength);
        if (result >= 0) return result;
        if (result !== EAGAIN) throw this.errorFor(result, 'recv failed');
        await this.waitReadable();
      }
    } finally {
      this.stateBits &= ~RECEIVING;
      if ((this.stateBits & CLOSED) === 0) this.schedule(NOTIFY_READABLE | NOTIFY_WRITABLE);
    }
  }
}
