/**
 * The non-blocking core of TlsSocket: the state machine between a TLS engine and an upstream.
 *
 * `trySend` / `tryRecv` return numbers and never allocate, throw or make a Promise in the steady
 * state. The async API in tls-socket.ts is built on the protected steps here.
 */
import {
  EAGAIN,
  EBADF,
  ECONNRESET,
  EOF_ABRUPT,
  EOF_GRACEFUL,
  EPIPE,
  NEED_READ,
  NEED_WRITE,
  codeError,
  codeName,
  type ShardTlsError,
} from '../shared/codes.js';
import { type IoVec, iovLength } from '../shared/iovec.js';
import type { TlsEngine, TlsSessionInfo } from './engine.js';
import type { FlushTracker } from './flush-tracker.js';
import {
  CLOSED,
  FLUSHING,
  PEER_CLOSED,
  PEER_SHUT_WRITES,
  READ_WAITS_WRITE,
  SHUTDOWN_FLUSHED,
  SHUTDOWN_REQUESTED,
  SHUTDOWN_SENT,
  UPSTREAM_EOF,
  WANT_READABLE,
  WANT_WRITABLE,
  WRITE_WAITS_READ,
  isReadInProgress,
  isWriteInProgress,
  isWriteShut,
} from './tls-socket-state.js';
import type { Upstream, UpstreamHandler } from './upstream.js';

/** Maximum TLS plaintext per record (RFC 8446 section 5.1): the staging buffer's size. */
export const MAX_RECORD_PLAINTEXT = 16 * 1024;

/** Ciphertext copied out of the engine per upstream write. */
const SCRATCH_SIZE = 64 * 1024;

/** Ciphertext read from the upstream per `writeInput`: one maximum TLS 1.2 record and header. */
const INPUT_SCRATCH_SIZE = MAX_RECORD_PLAINTEXT + 2048 + 5;

/** Upper bound on engine calls in one `trySend` or `tryRecv` without progress. */
const MAX_STALLED_ROUNDS = 64;

/** Upper bound on upstream writes in one flush (SCRATCH_SIZE each). */
const MAX_FLUSH_ROUNDS = 1024;

/** Pieces of arrays up to this size are staged by a byte loop instead of a subarray view. */
const COPY_LOOP_MAX = 1024;

/** Distinct ciphertext lengths whose scratch views are kept, so flushes do not allocate. */
const VIEW_CACHE_SIZE = 8;

/** Readiness kinds for `schedule`: a `readable` callback. */
export const NOTIFY_READABLE = 1;
/** Readiness kinds for `schedule`: a `writable` callback. */
export const NOTIFY_WRITABLE = 2;

/**
 * The non-blocking half of TlsSocket: `trySend`, `tryRecv`, readiness callbacks, detached
 * flushes and shutdown. TlsSocket adds the async API on the same state.
 */
export class TlsSocketCore implements Upstream {
  protected stateBits = 0;
  /** Error code returned by the next `trySend` (0 when none), kept after a failure. */
  protected writeError = 0;
  /** Error code returned by the next `tryRecv` (0 when none), kept after a failure. */
  private readError = 0;
  protected failure: unknown = undefined;

  private readonly staging = new Uint8Array(MAX_RECORD_PLAINTEXT);
  private readonly scratch = new Uint8Array(SCRATCH_SIZE);
  private readonly inputScratch = new Uint8Array(INPUT_SCRATCH_SIZE);
  private readonly viewCache: Uint8Array[] = [];
  private viewCacheNext = 0;
  private readonly flushIov: Uint8Array[] = [this.scratch];

  private handler: UpstreamHandler | null = null;
  private pendingNotify = 0;
  private notifyScheduled = false;
  private readonly deliver = (): void => this.deliverNotifications();
  private readableWaiters: Array<() => void> = [];
  private writableWaiters: Array<() => void> = [];

  private readonly tracker: FlushTracker | null;

  constructor(
    private readonly upstream: Upstream,
    private readonly engine: TlsEngine,
    flushes: FlushTracker | null,
  ) {
    this.tracker = flushes;
    for (let i = 0; i < VIEW_CACHE_SIZE; i++) this.viewCache.push(this.scratch.subarray(0, 0));

    upstream.setHandler({
      readable: () => this.onUpstreamReadable(),
      writable: () => this.onUpstreamWritable(),
    });
  }

  /**
   * Called when a readiness callback installed with `setHandler` throws. The socket is closed
   * first. The shard sets it so that such an exception closes this connection only.
   */
  onCallbackError: ((err: unknown) => void) | null = null;

  /** The state bit set (see tls-socket-state.ts), for diagnostics and tests. */
  get state(): number {
    return this.stateBits;
  }

  /** The engine's error object from the fatal failure of this connection, if one happened. */
  get error(): unknown {
    return this.failure;
  }

  /**
   * Encrypts plaintext from `iov` and sends the ciphertext to the upstream without waiting.
   *
   * It first flushes ciphertext left pending by earlier calls. It then feeds plaintext to the
   * engine: arrays shorter than one record are copied into a staging buffer so that small arrays
   * share records, and longer arrays go straight in. Last, it flushes the new ciphertext once
   * for the whole call.
   *
   * Results:
   * - `n > 0`: the engine consumed `n` plaintext bytes. The caller never offers them again and
   *   passes the rest of its iovec next time. When `n` covers the whole iovec but the upstream
   *   took only part of the ciphertext, a detached flush drains the rest in the background, and
   *   `trySend` returns EAGAIN until it ends. When `n` is short, the caller calls again with the
   *   rest (it gets EAGAIN when nothing fits). An error met after some bytes were consumed is
   *   kept and returned by the next call.
   *   After EAGAIN or a short count the caller offers the same unconsumed bytes again. OpenSSL
   *   may already hold their head in a half-sent record, and its SSL_write retry rule needs the
   *   retry to start with those bytes and be no shorter.
   * - `0`: the iovec was empty.
   * - `EAGAIN`: nothing was consumed. Either the upstream is full, or a detached flush or a
   *   `send()` owns the write side, or the engine needs input (an unfinished handshake) that has
   *   not arrived or that a `recv()` or `handshake()` is reading. A `writable` callback follows,
   *   and the caller parks until then.
   * - `EPIPE`: after `shutdownWrite()`/`shutdown()`, or after the peer's close_notify
   *   (RFC 8446 section 6.1). No callback follows; the caller stops writing.
   * - `ECONNRESET`: the engine failed (a protocol error, kept in `error`) or the upstream ended
   *   without close_notify while the engine needed input (truncation). No callback follows; the
   *   caller closes the socket.
   * - another negative code: the upstream's own error (see the upstream). The caller closes.
   * - `EBADF`: after `close()`.
   */
  trySend(iov: IoVec): number {
    const state = this.stateBits;
    if ((state & CLOSED) !== 0) return EBADF;

    const total = iovLength(iov);
    if (total === 0) return 0;
    if (this.writeError !== 0) return this.writeError;
    if (isWriteShut(state)) return EPIPE;
    if (isWriteInProgress(state)) {
      this.stateBits |= WANT_WRITABLE;
      return EAGAIN;
    }

    return this.sendStep(iov, total);
  }

  /**
   * Reads decrypted plaintext into `dst` at `offset`, up to `length` bytes, without waiting.
   *
   * Results:
   * - `n > 0`: `n` bytes of plaintext. The caller calls again until EAGAIN.
   * - `0`: the peer's close_notify arrived (RFC 8446 section 6.1), and every later call returns 0.
   * - `EAGAIN`: no complete record is buffered, or a `recv()`/`handshake()` owns the read side, or
   *   the engine must send (a TLS 1.3 KeyUpdate reply, a session ticket) and the upstream is full.
   *   In that last case a detached flush starts (unless one runs) and the read resumes when the
   *   upstream has drained, so nothing is lost or reordered. A `readable` callback follows in
   *   every case; the caller parks until then.
   * - `ECONNRESET`: truncation (the upstream ended without close_notify) or a protocol error,
   *   whose engine error object is kept in `error`. No callback follows; the caller closes.
   * - another negative code: the upstream's own error. No callback follows; the caller closes.
   * - `EBADF`: after `close()`.
   *
   * Throws a RangeError when `length` is below 1 or the range does not fit in `dst`, because that
   * is a caller bug and 0 would read as close_notify.
   */
  tryRecv(dst: Uint8Array, offset: number, length: number): number {
    if (length < 1 || offset < 0 || offset + length > dst.byteLength) {
      throw new RangeError(`invalid tryRecv range: offset ${offset}, length ${length}`);
    }

    const state = this.stateBits;
    if ((state & CLOSED) !== 0) return EBADF;
    if (isReadInProgress(state)) {
      this.stateBits |= WANT_READABLE;
      return EAGAIN;
    }

    return this.recvStep(dst, offset, length);
  }

  /** Installs the plaintext side's readiness callbacks. A later call replaces earlier ones. */
  setHandler(handler: UpstreamHandler): void {
    this.handler = handler;
  }

  /**
   * Starts a graceful end of our write side without waiting, so `trySend` returns EPIPE from
   * now on. Once no write is in progress, close_notify is queued (RFC 8446 section 6.1) and
   * flushed, by a detached flush when the upstream is full, and then the upstream's write side
   * is shut. Reading goes on until the peer's close_notify. Idempotent.
   */
  shutdownWrite(): void {
    if ((this.stateBits & (CLOSED | SHUTDOWN_REQUESTED)) !== 0) return;
    this.stateBits |= SHUTDOWN_REQUESTED;
    this.progressShutdown();
  }

  /**
   * Releases the engine (`engine.destroy`) and closes the upstream at once. Ciphertext still
   * pending is dropped, so call `shutdown()` first for a graceful end. Pending async calls
   * reject with ECANCELED, and a running detached flush ends. Idempotent.
   */
  close(): void {
    if ((this.stateBits & CLOSED) !== 0) return;
    this.stateBits |= CLOSED;
    if ((this.stateBits & FLUSHING) !== 0) this.endDetachedFlush(0);

    try {
      this.engine.destroy();
    } catch (error) {
      this.failure ??= error;
    }
    this.upstream.close();
    this.handler = null;
    this.wakeWaiters();
  }

  /**
   * Queues a TLS 1.3 KeyUpdate (RFC 8446 section 4.6.3), asking the peer to update its keys too
   * when `requestPeer` is true, and flushes when no write is in progress. Returns 1, 0 when the
   * connection is not TLS 1.3 or the handshake is not done, ECONNRESET when the engine failed, or
   * EBADF after `close()`.
   */
  keyUpdate(requestPeer: boolean): number {
    if ((this.stateBits & CLOSED) !== 0) return EBADF;

    let result: number;
    try {
      result = this.engine.keyUpdate(requestPeer);
    } catch (error) {
      return this.failEngine(error);
    }

    if (result === 1 && !isWriteInProgress(this.stateBits)) this.flushInBackground();
    return result;
  }

  /** Returns what the handshake agreed (null fields before it completes). Throws after close(). */
  info(): TlsSessionInfo {
    return this.engine.info();
  }

  // ---- trySend steps ----

  /** `trySend` after its ownership checks; also the step of `send()`. */
  protected sendStep(iov: IoVec, total: number): number {
    // 1. Ciphertext pending from earlier calls goes first.
    let pending = this.flushOutput();
    if (pending < 0) return this.failWrite(pending);
    if (pending > 0) {
      this.stateBits |= WANT_WRITABLE;
      return EAGAIN;
    }

    // 2. Feed plaintext to the engine. The cursor (index, offset) is the first byte not consumed.
    let consumed = 0;
    let stop = 0;
    let index = 0;
    let offset = 0;
    let stalled = 0;
    while (consumed < total) {
      while (offset === iov[index].byteLength) {
        index++;
        offset = 0;
      }

      let src: Uint8Array;
      let srcOffset: number;
      let length: number;
      const left = iov[index].byteLength - offset;
      if (left >= MAX_RECORD_PLAINTEXT) {
        src = iov[index];
        srcOffset = offset;
        length = left;
      } else {
        src = this.staging;
        srcOffset = 0;
        length = this.stage(iov, index, offset);
      }

      const result = this.engineWrite(src, srcOffset, length);
      if (result > 0) {
        consumed += result;
        let advance = result;
        while (advance > 0) {
          const rest = iov[index].byteLength - offset;
          if (advance < rest) {
            offset += advance;
            advance = 0;
          } else {
            advance -= rest;
            index++;
            offset = 0;
          }
        }
        if (result === length) continue;
      }

      // A short write or NEED_WRITE: the engine's output buffer is full, so flush and go on.
      if (result > 0 || result === NEED_WRITE) {
        pending = this.flushOutput();
        if (pending < 0) {
          stop = pending;
          break;
        }
        if (pending > 0) {
          stop = EAGAIN;
          break;
        }
        if (result === NEED_WRITE && ++stalled > MAX_STALLED_ROUNDS) {
          stop = EAGAIN;
          break;
        }
        continue;
      }

      if (result === NEED_READ) {
        stop = this.readForWrite();
        if (stop === 0 && ++stalled <= MAX_STALLED_ROUNDS) continue;
        if (stop === 0) stop = EAGAIN;
        break;
      }

      stop = this.engineResultToError(result);
      break;
    }

    // 3. One flush for the whole call. After a fatal stop it still sends any alert the engine made.
    pending = this.flushOutput();
    if (stop !== 0 && stop !== EAGAIN) {
      this.writeError = stop;
      return consumed > 0 ? consumed : stop;
    }
    if (pending < 0) {
      this.writeError = pending;
      return consumed > 0 ? consumed : pending;
    }

    if (pending > 0 && consumed === total) {
      this.startDetachedFlush();
      return consumed;
    }
    if (consumed < total) this.stateBits |= WANT_WRITABLE;
    return consumed > 0 ? consumed : EAGAIN;
  }

  /**
   * Copies plaintext from the cursor into the staging buffer, up to one record. Arrays of a
   * record or longer contribute only the head that fills the record, so records stay full.
   */
  private stage(iov: IoVec, index: number, offset: number): number {
    const staging = this.staging;
    let staged = 0;
    while (index < iov.length && staged < MAX_RECORD_PLAINTEXT) {
      const src = iov[index];
      const run = Math.min(src.byteLength - offset, MAX_RECORD_PLAINTEXT - staged);
      if (run === src.byteLength) {
        staging.set(src, staged);
      } else if (run <= COPY_LOOP_MAX) {
        // A byte loop copies a piece of an array without making a subarray view.
        for (let i = 0; i < run; i++) staging[staged + i] = src[offset + i];
      } else {
        staging.set(src.subarray(offset, offset + run), staged);
      }
      staged += run;
      index++;
      offset = 0;
    }
    return staged;
  }

  /**
   * Reads ciphertext for an engine that returned NEED_READ during a write (an unfinished
   * handshake). Returns 0 when input was pushed, EAGAIN when none is available or another reader
   * owns the read side (WRITE_WAITS_READ makes `writable` follow new input), or a fatal code.
   */
  private readForWrite(): number {
    // The peer cannot reply to handshake messages that have not left yet.
    const pending = this.flushOutput();
    if (pending < 0) return pending;

    if (isReadInProgress(this.stateBits)) {
      this.stateBits |= WRITE_WAITS_READ;
      return EAGAIN;
    }
    const space = this.engine.inputSpace();
    if (space === 0) {
      // Input is full of records that only `tryRecv` drains: wake the reader.
      this.stateBits |= WRITE_WAITS_READ;
      this.schedule(NOTIFY_READABLE);
      return EAGAIN;
    }

    const pulled = this.pullInput(space);
    if (pulled > 0) {
      if ((this.stateBits & WANT_READABLE) !== 0) this.schedule(NOTIFY_READABLE);
      return 0;
    }
    if (pulled === 0) {
      this.failure ??= new Error('TLS stream truncated: the transport ended during a handshake');
      return ECONNRESET;
    }
    if (pulled === EAGAIN) this.stateBits |= WRITE_WAITS_READ;
    return pulled;
  }

  // ---- tryRecv steps ----

  /** `tryRecv` after its ownership checks; also the step of `recv()`. */
  protected recvStep(dst: Uint8Array, offset: number, length: number): number {
    if (this.readError !== 0) return this.readError;
    if ((this.stateBits & PEER_CLOSED) !== 0) return 0;

    for (let round = 0; round < MAX_STALLED_ROUNDS; round++) {
      const result = this.engineRead(dst, offset, length);
      if (result > 0) {
        this.flushAfterRead();
        return result;
      }

      if (result === NEED_READ) {
        const pulled = this.readForRead();
        if (pulled >= 0) continue;
        return pulled;
      }

      if (result === NEED_WRITE) {
        // The engine must send (a KeyUpdate reply, a ticket) before it can read on.
        const before = this.engine.outputPending();
        const pending = this.flushOutput();
        if (pending < 0) return this.failRead(pending);
        if (pending < before) continue;

        if ((this.stateBits & FLUSHING) === 0) this.startDetachedFlush();
        this.stateBits |= READ_WAITS_WRITE | WANT_READABLE;
        return EAGAIN;
      }

      if (result === EOF_GRACEFUL) {
        this.stateBits |= PEER_CLOSED;
        if (this.engine.info().version !== 'TLSv1.3') this.stateBits |= PEER_SHUT_WRITES;
        this.flushAfterRead();
        return 0;
      }

      return this.failRead(this.engineResultToError(result));
    }

    // Many records without plaintext (tickets, KeyUpdates): yield, and come back.
    this.stateBits |= WANT_READABLE;
    this.schedule(NOTIFY_READABLE);
    return EAGAIN;
  }

  /** Pulls ciphertext for a read. Returns >= 0 when the engine has something new, or a code. */
  private readForRead(): number {
    // Handshake messages must reach the peer before it can reply, so drain them in the background.
    const pending = this.flushOutput();
    if (pending > 0 && (this.stateBits & FLUSHING) === 0) this.startDetachedFlush();
    if (pending < 0 && this.writeError === 0) this.writeError = pending;

    if ((this.stateBits & UPSTREAM_EOF) !== 0) {
      this.failure ??= new Error('TLS engine needs input after the transport ended');
      return this.failRead(ECONNRESET);
    }
    const space = this.engine.inputSpace();
    if (space === 0) {
      this.failure ??= new Error('TLS engine input buffer is full but contains no complete record');
      return this.failRead(ECONNRESET);
    }

    const pulled = this.pullInput(space);
    if (pulled >= 0) return pulled;
    if (pulled === EAGAIN) {
      this.stateBits |= WANT_READABLE;
      return EAGAIN;
    }
    return this.failRead(pulled);
  }

  /** Flushes ciphertext that a read produced, handing what does not fit to a detached flush. */
  private flushAfterRead(): void {
    if ((this.stateBits & FLUSHING) !== 0 || this.engine.outputPending() === 0) return;
    this.flushInBackground();
  }

  // ---- shared steps ----

  /**
   * Moves ciphertext from the engine to the upstream until either is empty or full. Returns the
   * ciphertext bytes still pending (0 when all left), or the upstream's negative error code.
   */
  protected flushOutput(): number {
    const engine = this.engine;
    for (let round = 0; round < MAX_FLUSH_ROUNDS; round++) {
      // peekOutput copies nothing exactly when nothing is pending, so it also serves as the
      // check, and consumeOutput returns the rest: two engine calls per round.
      const copied = engine.peekOutput(this.scratch, 0, SCRATCH_SIZE);
      if (copied === 0) return 0;

      const sent = this.upstream.trySend(this.scratchIov(copied));
      if (sent === EAGAIN || sent === 0) return engine.outputPending();
      if (sent < 0) return sent;

      const pending = engine.consumeOutput(sent);
      if (pending === 0 || sent < copied) return pending;
    }
    return engine.outputPending();
  }

  /** Flushes now and hands the rest, if any, to a detached flush. */
  private flushInBackground(): void {
    const pending = this.flushOutput();
    if (pending > 0) this.startDetachedFlush();
    else if (pending < 0 && this.writeError === 0) this.writeError = pending;
  }

  /** Returns a one-array iovec over the first `length` scratch bytes, reusing cached views. */
  private scratchIov(length: number): IoVec {
    const iov = this.flushIov;
    if (length === SCRATCH_SIZE) {
      iov[0] = this.scratch;
      return iov;
    }

    const cache = this.viewCache;
    for (let i = 0; i < VIEW_CACHE_SIZE; i++) {
      if (cache[i].byteLength === length) {
        iov[0] = cache[i];
        return iov;
      }
    }

    const view = this.scratch.subarray(0, length);
    cache[this.viewCacheNext] = view;
    this.viewCacheNext = (this.viewCacheNext + 1) % VIEW_CACHE_SIZE;
    iov[0] = view;
    return iov;
  }

  /**
   * Reads ciphertext from the upstream into the engine. Returns the bytes pushed (> 0), 0 at the
   * upstream's end of stream (passed to the engine once), EAGAIN, or the upstream's error code.
   * A caller that just read `inputSpace()` passes it as `space`, which saves an engine call.
   */
  protected pullInput(space = this.engine.inputSpace()): number {
    if ((this.stateBits & UPSTREAM_EOF) !== 0) return 0;

    const request = Math.min(space, INPUT_SCRATCH_SIZE);
    const received = this.upstream.tryRecv(this.inputScratch, 0, request);
    if (received === 0) {
      this.stateBits |= UPSTREAM_EOF;
      this.engine.writeInputEof();
      return 0;
    }
    if (received < 0) return received;

    // The request was capped at inputSpace(), so the engine takes every byte.
    this.engine.writeInput(this.inputScratch, 0, received);
    if ((this.stateBits & WRITE_WAITS_READ) !== 0) this.schedule(NOTIFY_WRITABLE);
    return received;
  }

  protected startDetachedFlush(): void {
    if ((this.stateBits & FLUSHING) !== 0) return;
    this.stateBits |= FLUSHING;
    this.tracker?.started();
  }

  private endDetachedFlush(error: number): void {
    this.stateBits &= ~FLUSHING;
    if (error < 0 && this.writeError === 0) this.writeError = error;
    this.tracker?.ended();
  }

  /**
   * Queues close_notify once no write is in progress, flushes it, then shuts the upstream's write
   * side. Runs again when a detached flush or a `send()` ends.
   */
  protected progressShutdown(): void {
    const state = this.stateBits;
    if ((state & SHUTDOWN_REQUESTED) === 0 || (state & (SHUTDOWN_FLUSHED | CLOSED)) !== 0) return;
    if (isWriteInProgress(state)) return;

    if ((state & SHUTDOWN_SENT) === 0) {
      if (!this.engine.handshakeDone() || this.writeError !== 0) {
        // No TLS session to close, or a broken one: only the transport is shut.
        this.finishShutdown();
        return;
      }

      const result = this.engineShutdown();
      if (result === NEED_WRITE) {
        this.flushInBackground();
        if ((this.stateBits & FLUSHING) === 0 && this.writeError === 0) this.progressShutdown();
        return;
      }
      if (result < 0) {
        this.finishShutdown();
        return;
      }
      this.stateBits |= SHUTDOWN_SENT;
    }

    const pending = this.flushOutput();
    if (pending > 0) {
      this.startDetachedFlush();
      return;
    }
    if (pending < 0 && this.writeError === 0) this.writeError = pending;
    this.finishShutdown();
  }

  private finishShutdown(): void {
    this.stateBits |= SHUTDOWN_FLUSHED;
    this.upstream.shutdownWrite();
    this.schedule(NOTIFY_WRITABLE);
  }

  // ---- engine calls: the engine throws at most once per connection, on a fatal failure ----

  private engineWrite(src: Uint8Array, offset: number, length: number): number {
    try {
      return this.engine.write(src, offset, length);
    } catch (error) {
      return this.failEngine(error);
    }
  }

  private engineRead(dst: Uint8Array, offset: number, length: number): number {
    try {
      return this.engine.read(dst, offset, length);
    } catch (error) {
      return this.failEngine(error);
    }
  }

  private engineShutdown(): number {
    try {
      return this.engine.shutdown();
    } catch (error) {
      return this.failEngine(error);
    }
  }

  protected engineHandshake(): number {
    try {
      return this.engine.handshake();
    } catch (error) {
      return this.failEngine(error);
    }
  }

  /** Keeps the engine's error and fails both directions with ECONNRESET. */
  private failEngine(error: unknown): number {
    this.failure ??= error;
    if (this.writeError === 0) this.writeError = ECONNRESET;
    if (this.readError === 0) this.readError = ECONNRESET;
    return ECONNRESET;
  }

  /** Maps an engine result that is neither a count nor NEED_* to a socket code. */
  protected engineResultToError(result: number): number {
    if (result === EOF_GRACEFUL) {
      this.stateBits |= PEER_CLOSED | PEER_SHUT_WRITES;
      return EPIPE;
    }
    if (result === EOF_ABRUPT) {
      this.failure ??= new Error('TLS stream truncated: the transport ended without close_notify');
      return ECONNRESET;
    }
    if (result === ECONNRESET) return ECONNRESET;

    this.failure ??= new Error(`TLS engine returned an unexpected result ${codeName(result)}`);
    return ECONNRESET;
  }

  protected failWrite(code: number): number {
    if (this.writeError === 0) this.writeError = code;
    return code;
  }

  protected failRead(code: number): number {
    if (this.readError === 0) this.readError = code;
    return code;
  }

  // ---- readiness ----

  private onUpstreamReadable(): void {
    if ((this.stateBits & CLOSED) !== 0) return;
    let kinds = NOTIFY_READABLE;
    if ((this.stateBits & WRITE_WAITS_READ) !== 0) kinds |= NOTIFY_WRITABLE;
    this.deliverNow(kinds);
  }

  private onUpstreamWritable(): void {
    if ((this.stateBits & CLOSED) !== 0) return;

    if ((this.stateBits & FLUSHING) !== 0) {
      const pending = this.flushOutput();
      if (pending > 0) {
        if ((this.stateBits & READ_WAITS_WRITE) !== 0) this.deliverNow(NOTIFY_READABLE);
        return;
      }
      this.endDetachedFlush(pending);
      this.progressShutdown();
    }

    let kinds = NOTIFY_WRITABLE;
    if ((this.stateBits & READ_WAITS_WRITE) !== 0) kinds |= NOTIFY_READABLE;
    this.deliverNow(kinds);
  }

  /** Schedules readiness callbacks from a microtask, coalesced, never re-entrantly. */
  protected schedule(kinds: number): void {
    this.pendingNotify |= kinds;
    if (this.notifyScheduled) return;
    this.notifyScheduled = true;
    queueMicrotask(this.deliver);
  }

  private deliverNotifications(): void {
    this.notifyScheduled = false;
    const kinds = this.pendingNotify;
    this.pendingNotify = 0;
    if ((this.stateBits & CLOSED) === 0) this.deliverNow(kinds);
  }

  /** Wakes async waiters and calls the handler, for callers that saw EAGAIN. */
  private deliverNow(kinds: number): void {
    if ((kinds & NOTIFY_WRITABLE) !== 0) {
      this.stateBits &= ~WRITE_WAITS_READ;
      this.wake(false);
      if ((this.stateBits & WANT_WRITABLE) !== 0 && this.handler !== null) {
        this.stateBits &= ~WANT_WRITABLE;
        try {
          this.handler.writable();
        } catch (err) {
          return this.callbackFailed(err);
        }
      }
    }

    if ((kinds & NOTIFY_READABLE) !== 0 && (this.stateBits & CLOSED) === 0) {
      this.stateBits &= ~READ_WAITS_WRITE;
      this.wake(true);
      if ((this.stateBits & WANT_READABLE) !== 0 && this.handler !== null) {
        this.stateBits &= ~WANT_READABLE;
        try {
          this.handler.readable();
        } catch (err) {
          return this.callbackFailed(err);
        }
      }
    }
  }

  /**
   * A readiness callback threw: the connection is closed, and `onCallbackError` gets the error
   * (without it, the error is rethrown, because a caller bug must not pass silently).
   */
  private callbackFailed(err: unknown): void {
    this.failure ??= err;
    this.close();
    if (this.onCallbackError === null) throw err;
    this.onCallbackError(err);
  }

  private wake(readable: boolean): void {
    const waiters = readable ? this.readableWaiters : this.writableWaiters;
    if (waiters.length === 0) return;
    if (readable) this.readableWaiters = [];
    else this.writableWaiters = [];
    for (const resolve of waiters) resolve();
  }

  protected wakeWaiters(): void {
    this.wake(true);
    this.wake(false);
  }

  protected waitReadable(): Promise<void> {
    return new Promise((resolve) => this.readableWaiters.push(resolve));
  }

  protected waitWritable(): Promise<void> {
    return new Promise((resolve) => this.writableWaiters.push(resolve));
  }

  protected errorFor(code: number, message: string): ShardTlsError {
    return codeError(code, `${message}: ${codeName(code)}`, this.failure);
  }
}
