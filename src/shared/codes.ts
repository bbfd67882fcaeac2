/**
 * Every numeric result code of shardtls, in one place.
 *
 * Hot paths (the engine, `trySend`, `tryRecv`, the rings) return a number: a byte count (>= 0)
 * or one of the negative codes below. Error objects with a stable string `code` are made only
 * where a stream or an event meets user code (see `codeError`).
 *
 * Socket codes use the negated Linux errno value, so they read like the C APIs they mirror.
 * Engine codes sit in their own range (-1000 and below) so the two can never be confused.
 */

/** The operation would block: retry after the matching readiness callback. */
export const EAGAIN = -11;
/** A file descriptor or handle is no longer valid (used after close). */
export const EBADF = -9;
/** Writing after the peer's close_notify or after our own shutdown. */
export const EPIPE = -32;
/** Protocol error, truncation (TCP end without close_notify) or a reset from the peer. */
export const ECONNRESET = -104;
/** The socket is not connected yet (handshake not started). */
export const ENOTCONN = -107;
/** A deadline expired (handshake timeout, drain deadline). */
export const ETIMEDOUT = -110;
/** The operation was cancelled because the socket was closed locally. */
export const ECANCELED = -125;

/** The TLS engine needs ciphertext from the peer before it can go on. */
export const NEED_READ = -1001;
/** The TLS engine's output buffer is full: flush ciphertext to the peer, then call again. */
export const NEED_WRITE = -1002;
/** The peer sent close_notify (RFC 8446 section 6.1): a clean end of its data. */
export const EOF_GRACEFUL = -1003;
/** The transport ended without close_notify, or a fatal alert arrived after the handshake. */
export const EOF_ABRUPT = -1004;

const NAMES: ReadonlyMap<number, string> = new Map([
  [EAGAIN, 'EAGAIN'],
  [EBADF, 'EBADF'],
  [EPIPE, 'EPIPE'],
  [ECONNRESET, 'ECONNRESET'],
  [ENOTCONN, 'ENOTCONN'],
  [ETIMEDOUT, 'ETIMEDOUT'],
  [ECANCELED, 'ECANCELED'],
  [NEED_READ, 'NEED_READ'],
  [NEED_WRITE, 'NEED_WRITE'],
  [EOF_GRACEFUL, 'EOF_GRACEFUL'],
  [EOF_ABRUPT, 'EOF_ABRUPT'],
]);

/** Returns the name of a result code (`'EAGAIN'`), or `'OK'` for a byte count. */
export function codeName(code: number): string {
  if (code >= 0) return 'OK';
  return NAMES.get(code) ?? `E${-code}`;
}

/** An error raised at the edge between shardtls and user code, with a stable `code`. */
export class ShardTlsError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ShardTlsError';
    this.code = code;
  }
}

/** Makes an error object for a negative result code, for rejecting a promise or an event. */
export function codeError(code: number, message?: string, cause?: unknown): ShardTlsError {
  const name = codeName(code);
  return new ShardTlsError(name, message ?? name, cause === undefined ? undefined : { cause });
}
