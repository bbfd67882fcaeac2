/**
 * The OpenSSL implementation of `TlsEngine`: a thin class over the shardtls_tls addon.
 *
 * Each method is one native call with no allocation, so the per-record cost is the Node-API
 * call itself. Results follow `TlsEngine`; the extra methods below (`takeOutput`, `transferTo`,
 * `session`, `closeReason`) serve upstreams that take everything, in-memory pairs and session
 * resumption. `writeAndPeek`, `writeAndTake` and `pushAndRead` do two steps in one native call
 * and leave their second count in `lastMoved`.
 *
 * Fatal alerts: an alert received during the handshake is why the handshake failed, so
 * `handshake`, `read` or `write` throw a TlsEngineError with the alert text (for example
 * "tlsv13 alert certificate required"). After the handshake, a received fatal alert ends the
 * stream like a truncation: calls return EOF_ABRUPT and `closeReason()` returns the alert text.
 */
import { ShardTlsError } from '../shared/codes.js';

import type { SecureContext } from './context.js';
import type { TlsEngine, TlsSessionInfo } from './engine.js';
import { native, type NativeHandle } from './native.js';

/** The reason a TLS connection failed: 'ERR_TLS_PROTOCOL' or 'ERR_TLS_CERT'. */
export type TlsEngineErrorCode = 'ERR_TLS_PROTOCOL' | 'ERR_TLS_CERT';

/**
 * A protocol or certificate failure, with OpenSSL's reason string as the message. For a
 * verify failure the message ends with the X.509 reason, for example
 * "certificate verify failed: Hostname mismatch".
 */
export class TlsEngineError extends ShardTlsError {
  declare readonly code: TlsEngineErrorCode;

  constructor(message: string, code: string) {
    super(code, message);
    this.name = 'TlsEngineError';
  }
}

native.setErrorClass(TlsEngineError);

/*
 * The second result of the two-in-one calls: the addon writes it into slot 0 of this array,
 * which is registered once per thread, so those calls allocate nothing to return two numbers.
 */
const results = new Int32Array(4);
native.setResultArray(results);

/** The values of the addon's buffer_policy (shardtls.h). */
const BUFFERS_RELEASE_PER_RECORD = 0;
const BUFFERS_KEEP = 1;
const BUFFERS_RELEASE_IDLE = 2;

/**
 * Interval of the idle-buffer sweep in milliseconds. An engine with `releaseBuffers: 'idle'`
 * that made no call for one full interval frees its SSL record buffers, so an idle connection
 * returns to the release-per-record footprint within one to two intervals.
 */
export const IDLE_SWEEP_INTERVAL_MS = 1000;

let sweepTimer: ReturnType<typeof setInterval> | null = null;

function sweepIdleBuffers(): void {
  native.releaseIdleBuffers();
  if (native.liveEngines() === 0 && sweepTimer !== null) {
    clearInterval(sweepTimer);
    sweepTimer = null;
  }
}

/**
 * Frees the SSL record buffers of this thread's `'idle'` engines that made no engine call since
 * the previous sweep, and marks the others for the next one. The engine module runs it every
 * `IDLE_SWEEP_INTERVAL_MS` on an unreferenced timer; call it directly to release sooner.
 * Returns the number of engines whose buffers were freed. An engine with a partial record
 * buffered keeps its buffers until a later sweep.
 */
export function releaseIdleBuffers(): number {
  return native.releaseIdleBuffers();
}

/** `TlsSessionInfo` plus the peer's verify error. */
export interface OpenSslSessionInfo extends TlsSessionInfo {
  /**
   * X509_verify_cert_error_string of the peer chain, or null when it verified or no certificate
   * came. Set only when verification did not fail the handshake (rejectUnauthorized false).
   */
  verifyError: string | null;
}

/** Options of `createEngine`. */
export interface EngineOptions {
  /** Server side of the connection. Default false. */
  isServer?: boolean;
  /** Client: SNI name and hostname check, overriding the context's `servername`. */
  servername?: string;
  /**
   * Size of each of the two BIO pair buffers in bytes, 512 B to 16 MiB. Default 17 KiB: one
   * maximum TLS record, allocated on first use (see engine.c for the reasoning).
   */
  bioSize?: number;
  /** Client: a session from `session()` of an earlier engine, to resume. */
  session?: Uint8Array;
  /**
   * When SSL frees its record buffers (about 34 KiB while allocated). `'idle'` (default) keeps
   * them while the engine is busy and frees them once it made no call for one to two
   * `IDLE_SWEEP_INTERVAL_MS` intervals. `true` frees them whenever they are empty
   * (SSL_MODE_RELEASE_BUFFERS), at the cost of a malloc and free per record. `false` keeps them
   * until `destroy()`.
   *
   * Measured by `npx tsx bench/engine.ts` (node 20.20.2, OpenSSL 3.0.19, 2-core AMD EPYC):
   * RSS per idle TLS 1.3 engine that moved 16 KiB each way is 53 KiB with `true`, 85 KiB with
   * `false` and 56 KiB with `'idle'` after two sweeps. 64-byte echo over
   * peekOutput/consumeOutput/writeInput runs at 304k, 342k and 337k round trips per CPU second.
   */
  releaseBuffers?: boolean | 'idle';
}

/** One TLS connection over OpenSSL. Call `destroy()` when done; the collector is a fallback. */
export class OpenSslEngine implements TlsEngine {
  readonly isServer: boolean;
  readonly #h: NativeHandle;

  /** Use `createEngine`. */
  constructor(handle: NativeHandle, isServer: boolean) {
    this.#h = handle;
    this.isServer = isServer;
  }

  handshake(): number {
    return native.handshake(this.#h);
  }

  handshakeDone(): boolean {
    return native.handshakeDone(this.#h);
  }

  write(src: Uint8Array, offset: number, length: number): number {
    return native.write(this.#h, src, offset, length);
  }

  read(dst: Uint8Array, offset: number, length: number): number {
    return native.read(this.#h, dst, offset, length);
  }

  /**
   * The second count of the last `writeAndPeek`, `writeAndTake` or `pushAndRead` on any engine
   * of this thread, because one per-thread array carries it: ciphertext bytes copied out, or
   * ciphertext bytes accepted. Read it before the next such call. After `writeAndPeek` or
   * `writeAndTake` threw it is 0; after `pushAndRead` threw it is the bytes accepted.
   */
  get lastMoved(): number {
    return results[0];
  }

  /**
   * `write(src, offset, length)`, then copies pending ciphertext into `dst` without consuming
   * it, as `peekOutput` does (up to the ring's wrap), and sets `lastMoved` to the bytes copied.
   * Returns what `write` returns. The copy also runs after NEED_WRITE and EOF codes; a thrown
   * TlsEngineError skips it, and the alert it queued stays for `peekOutput`.
   */
  writeAndPeek(
    src: Uint8Array,
    offset: number,
    length: number,
    dst: Uint8Array,
    dstOffset: number,
    dstLength: number,
  ): number {
    return native.writeOut(this.#h, src, offset, length, dst, dstOffset, dstLength, false);
  }

  /**
   * `writeAndPeek` that also consumes what it copied, across the ring's wrap, as `takeOutput`
   * does. For an upstream that always takes everything it is given.
   */
  writeAndTake(
    src: Uint8Array,
    offset: number,
    length: number,
    dst: Uint8Array,
    dstOffset: number,
    dstLength: number,
  ): number {
    return native.writeOut(this.#h, src, offset, length, dst, dstOffset, dstLength, true);
  }

  /**
   * `writeInput(src, offset, length)`, then `read(dst, dstOffset, dstLength)`. Sets `lastMoved`
   * to the ciphertext bytes accepted, fewer than `length` when the input buffer filled (push the
   * rest after reading). Returns what `read` returns; a `dstLength` of 0 only pushes.
   */
  pushAndRead(
    src: Uint8Array,
    offset: number,
    length: number,
    dst: Uint8Array,
    dstOffset: number,
    dstLength: number,
  ): number {
    return native.pushRead(this.#h, src, offset, length, dst, dstOffset, dstLength);
  }

  shutdown(): number {
    return native.shutdown(this.#h);
  }

  outputPending(): number {
    return native.outputPending(this.#h);
  }

  /**
   * Copies pending ciphertext without consuming it. Returns the bytes copied. That can be fewer
   * than `outputPending()` when the BIO pair's ring buffer wraps after a partial
   * `consumeOutput`, so consume what was sent and peek again for the rest.
   */
  peekOutput(dst: Uint8Array, offset: number, length: number): number {
    return native.peekOutput(this.#h, dst, offset, length);
  }

  /**
   * Drops `n` pending bytes and returns the bytes still pending. Throws a RangeError when `n`
   * exceeds `outputPending()`.
   */
  consumeOutput(n: number): number {
    return native.consumeOutput(this.#h, n);
  }

  /** Copies and consumes up to `length` pending bytes across the wrap. Returns the bytes moved. */
  takeOutput(dst: Uint8Array, offset: number, length: number): number {
    return native.takeOutput(this.#h, dst, offset, length);
  }

  inputSpace(): number {
    return native.inputSpace(this.#h);
  }

  /** Pushes ciphertext from the peer. Returns the bytes accepted, 0 when the input is full. */
  writeInput(src: Uint8Array, offset: number, length: number): number {
    return native.writeInput(this.#h, src, offset, length);
  }

  writeInputEof(): void {
    native.writeInputEof(this.#h);
  }

  /**
   * Moves pending ciphertext straight into `peer`'s input, as far as it has room. Returns the
   * bytes moved. For two engines in one thread (tests, benchmarks).
   */
  transferTo(peer: OpenSslEngine): number {
    return native.transfer(this.#h, peer.#h);
  }

  keyUpdate(requestPeer: boolean): number {
    return native.keyUpdate(this.#h, requestPeer);
  }

  /**
   * Returns the newest resumable session as DER bytes (client side), or null. TLS 1.3 tickets
   * arrive after the handshake, so read from the engine once before asking.
   */
  session(): Uint8Array | null {
    return native.session(this.#h);
  }

  /** Returns the fatal alert text behind the last EOF_ABRUPT, or null. */
  closeReason(): string | null {
    return native.closeReason(this.#h);
  }

  info(): OpenSslSessionInfo {
    return native.info(this.#h);
  }

  destroy(): void {
    native.destroy(this.#h);
  }
}

/**
 * Makes a TLS engine for one connection from a secure context.
 *
 * Returns the engine. Throws a TypeError when the context was destroyed, a RangeError for a
 * `bioSize` out of range, and an Error with code 'ERR_INVALID_ARG_VALUE' for a servername that
 * OpenSSL rejects. The engine keeps the native context alive until it is destroyed.
 */
export function createEngine(context: SecureContext, options: EngineOptions = {}): OpenSslEngine {
  const isServer = options.isServer ?? false;
  const servername = options.servername ?? context.servername;
  const release = options.releaseBuffers ?? 'idle';
  let policy = BUFFERS_RELEASE_IDLE;
  if (release === true) policy = BUFFERS_RELEASE_PER_RECORD;
  else if (release === false) policy = BUFFERS_KEEP;

  const handle = native.engineCreate(
    context.nativeHandle(),
    isServer,
    isServer ? null : servername,
    options.bioSize ?? 0,
    options.session ?? null,
    policy,
  );
  if (policy === BUFFERS_RELEASE_IDLE && sweepTimer === null) {
    sweepTimer = setInterval(sweepIdleBuffers, IDLE_SWEEP_INTERVAL_MS);
    // The sweep never keeps a process or worker alive on its own.
    sweepTimer.unref();
  }
  return new OpenSslEngine(handle, isServer);
}

/** Returns the number of engines of this thread not yet destroyed or collected. */
export function liveEngines(): number {
  return native.liveEngines();
}

/** Returns the number of native secure contexts of this thread still in use. */
export function liveContexts(): number {
  return native.liveContexts();
}
