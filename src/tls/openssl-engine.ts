/**
 * The OpenSSL implementation of `TlsEngine`: a thin class over the shardtls_tls addon.
 *
 * Each method is one native call with no allocation, so the per-record cost is the Node-API
 * call itself. Results follow `TlsEngine`; the extra methods below (`takeOutput`, `transferTo`,
 * `session`, `closeReason`) serve upstreams that take everything, in-memory pairs and session
 * resumption.
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
   * Free SSL's record buffers whenever they are empty (SSL_MODE_RELEASE_BUFFERS). Default true,
   * which suits many idle connections. False keeps about 34 KiB per engine allocated and saves a
   * malloc and free per record, for connections that stay busy.
   */
  releaseBuffers?: boolean;
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

  /** Drops `n` pending bytes. Throws a RangeError when `n` exceeds `outputPending()`. */
  consumeOutput(n: number): void {
    native.consumeOutput(this.#h, n);
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
  const handle = native.engineCreate(
    context.nativeHandle(),
    isServer,
    isServer ? null : servername,
    options.bioSize ?? 0,
    options.session ?? null,
    options.releaseBuffers ?? true,
  );
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
