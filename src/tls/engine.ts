/**
 * The TLS engine: one TLS connection with no I/O of its own.
 *
 * The engine sits between two byte streams. On the application side it takes and returns
 * plaintext (`write`, `read`). On the network side it takes ciphertext that arrived from the peer
 * (`writeInput`) and keeps ciphertext to be sent to the peer (`outputPending`, `peekOutput`,
 * `consumeOutput`). It never touches a socket, so a TlsSocket can drive it over any upstream and
 * tests can drive a TlsSocket with a fake engine.
 *
 * Results are numbers: a byte count, or one of the engine codes from `shared/codes.ts`:
 *
 * - `NEED_READ`: the engine needs ciphertext from the peer (`writeInput`) before it can go on.
 * - `NEED_WRITE`: the engine's output buffer is full; flush ciphertext, then call again.
 * - `EOF_GRACEFUL`: the peer sent close_notify.
 * - `EOF_ABRUPT`: the input ended (`writeInputEof`) without close_notify, or a fatal alert
 *   arrived after the handshake (one during the handshake throws, like any handshake failure).
 *
 * Protocol and certificate failures throw a `TlsEngineError` with OpenSSL's reason string.
 * That happens once per connection at most, so it stays off the steady-state hot path.
 */

/** A summary of the peer's certificate, with no key material. */
export interface PeerCertificateSummary {
  subject: string;
  issuer: string;
  /** Subject alternative names as `DNS:name` / `IP Address:addr` entries. */
  subjectAltNames: string[];
  validFrom: string;
  validTo: string;
  serialNumber: string;
  /** SHA-256 fingerprint of the DER encoding, upper-case hex pairs joined by `:`. */
  fingerprint256: string;
}

/** The parameters the handshake agreed on; fields are null before it completes. */
export interface TlsSessionInfo {
  /** `'TLSv1.2'` or `'TLSv1.3'`. */
  version: string | null;
  /** OpenSSL's cipher name, for example `'TLS_AES_128_GCM_SHA256'`. */
  cipher: string | null;
  /** The ALPN protocol both sides agreed on, or null when none was. */
  alpnProtocol: string | null;
  /** The SNI name the client sent (server side) or requested (client side). */
  servername: string | null;
  /** The peer's certificate, or null when it sent none. */
  peerCertificate: PeerCertificateSummary | null;
  /** True when the session was resumed from a ticket or session id. */
  sessionReused: boolean;
}

/** One TLS connection's state machine with no I/O. */
export interface TlsEngine {
  /** True for the server side of the connection. */
  readonly isServer: boolean;

  /**
   * Advances the handshake. Returns 1 when it is complete, or NEED_READ, NEED_WRITE,
   * EOF_GRACEFUL, EOF_ABRUPT. Throws TlsEngineError when the handshake fails (bad certificate,
   * no shared cipher, a peer that does not speak TLS).
   */
  handshake(): number;

  /** True once the handshake has completed. */
  handshakeDone(): boolean;

  /**
   * Encrypts up to `length` bytes of `src` from `offset`. Returns the bytes consumed (> 0), or
   * NEED_READ, NEED_WRITE, EOF_GRACEFUL, EOF_ABRUPT. Partial writes are allowed: a return below
   * `length` means the output buffer filled up. Runs the handshake first if it is not done.
   * Throws TlsEngineError on a protocol failure.
   */
  write(src: Uint8Array, offset: number, length: number): number;

  /**
   * Decrypts up to `length` bytes into `dst` at `offset`. Returns the bytes read (> 0), or
   * NEED_READ (no complete record yet), NEED_WRITE (the engine must send, for example a
   * TLS 1.3 KeyUpdate answer or a session ticket, and its output buffer is full), EOF_GRACEFUL
   * or EOF_ABRUPT. Throws TlsEngineError on a protocol failure (bad MAC, unexpected message).
   */
  read(dst: Uint8Array, offset: number, length: number): number;

  /**
   * Sends close_notify (RFC 8446 section 6.1). Returns 1 once close_notify was both sent and
   * received, 0 once ours is queued in the output but the peer's has not arrived, or NEED_WRITE
   * when the output buffer is full. Calling it again after 0 is allowed.
   */
  shutdown(): number;

  /** Bytes of ciphertext waiting to be sent to the peer. */
  outputPending(): number;

  /**
   * Copies up to `length` bytes of pending ciphertext into `dst` at `offset` without consuming
   * them. Returns the bytes copied, which is 0 only when nothing is pending or `length` is 0.
   */
  peekOutput(dst: Uint8Array, offset: number, length: number): number;

  /**
   * Drops the first `n` bytes of pending ciphertext, after the upstream accepted them. Returns
   * the bytes still pending, so a flush loop needs no `outputPending()` call after it.
   */
  consumeOutput(n: number): number;

  /** Bytes of ciphertext that `writeInput` accepts now. */
  inputSpace(): number;

  /**
   * Pushes ciphertext from the peer. Returns the bytes accepted, which is fewer than `length`
   * when the input buffer fills (read plaintext out, then push the rest).
   */
  writeInput(src: Uint8Array, offset: number, length: number): number;

  /** Marks the end of the peer's ciphertext (TCP FIN). Reads past buffered data then end. */
  writeInputEof(): void;

  /**
   * Queues a TLS 1.3 KeyUpdate (RFC 8446 section 4.6.3), asking the peer to update its keys as
   * well when `requestPeer` is true. Returns 1, or 0 when the connection is not TLS 1.3 or the
   * handshake is not done. The message goes out with the next write or flush.
   */
  keyUpdate(requestPeer: boolean): number;

  /** Returns the parameters the handshake agreed on. */
  info(): TlsSessionInfo;

  /** Frees the engine's native memory. Safe to call twice; any other call afterwards throws. */
  destroy(): void;
}
