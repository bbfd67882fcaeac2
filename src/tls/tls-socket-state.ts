/**
 * The state of a TlsSocket as one bit set, with named predicates.
 *
 * A socket's state is a single number so a check on the hot path is one AND, and a test can set
 * up any corner of the state machine by writing one value.
 */

/** The handshake has completed. */
export const HANDSHAKE_DONE = 1 << 0;
/** An async `handshake()` is running and owns the upstream's read side. */
export const HANDSHAKING = 1 << 1;
/** An async `send()` is running and owns the write side. */
export const SENDING = 1 << 2;
/** An async `recv()` is running and owns the read side. */
export const RECEIVING = 1 << 3;
/** A detached flush is draining ciphertext and owns the write side. */
export const FLUSHING = 1 << 4;
/** `shutdownWrite()` was called: close_notify goes out once the write side is free. */
export const SHUTDOWN_REQUESTED = 1 << 5;
/** Our close_notify is queued in the engine (RFC 8446 section 6.1). */
export const SHUTDOWN_SENT = 1 << 6;
/** The peer's close_notify arrived: no more plaintext comes, and no more may be sent. */
export const PEER_CLOSED = 1 << 7;
/** `close()` released the engine and the upstream. */
export const CLOSED = 1 << 8;
/** A `trySend` caller saw EAGAIN or a short count and waits for `writable`. */
export const WANT_WRITABLE = 1 << 9;
/** A `tryRecv` caller saw EAGAIN and waits for `readable`. */
export const WANT_READABLE = 1 << 10;
/** `trySend` returned EAGAIN while the engine waits for input: `writable` follows new input. */
export const WRITE_WAITS_READ = 1 << 11;
/** `tryRecv` returned EAGAIN while the engine waits to send: `readable` follows a drain. */
export const READ_WAITS_WRITE = 1 << 12;
/** The upstream reached the end of its stream, and `writeInputEof` passed that to the engine. */
export const UPSTREAM_EOF = 1 << 13;
/** Our close_notify has left through the upstream, which was then shut for writing. */
export const SHUTDOWN_FLUSHED = 1 << 14;
/**
 * The peer's close_notify also ends our writes: on TLS 1.2, where the receiver must answer with
 * its own close_notify and stop (RFC 5246 section 7.2.1), or when a write itself met it. On
 * TLS 1.3 each side closes only its own direction (RFC 8446 section 6.1), so writes go on.
 */
export const PEER_SHUT_WRITES = 1 << 15;

/** True while another writer (a `send()` or a detached flush) owns the write side. */
export function isWriteInProgress(state: number): boolean {
  return (state & (SENDING | FLUSHING)) !== 0;
}

/** True while another reader (a `recv()` or a `handshake()`) owns the read side. */
export function isReadInProgress(state: number): boolean {
  return (state & (RECEIVING | HANDSHAKING)) !== 0;
}

/** True when no more plaintext may be sent: after our shutdown, or see PEER_SHUT_WRITES. */
export function isWriteShut(state: number): boolean {
  return (state & (SHUTDOWN_REQUESTED | SHUTDOWN_SENT | PEER_SHUT_WRITES)) !== 0;
}

/** True once `close()` has run. */
export function isClosed(state: number): boolean {
  return (state & CLOSED) !== 0;
}

/** Names the set bits, for logs and test failure messages. */
export function describeState(state: number): string {
  const names: string[] = [];
  for (const [bit, name] of STATE_NAMES) {
    if ((state & bit) !== 0) names.push(name);
  }
  return names.length === 0 ? 'NONE' : names.join('|');
}

const STATE_NAMES: ReadonlyArray<readonly [number, string]> = [
  [HANDSHAKE_DONE, 'HANDSHAKE_DONE'],
  [HANDSHAKING, 'HANDSHAKING'],
  [SENDING, 'SENDING'],
  [RECEIVING, 'RECEIVING'],
  [FLUSHING, 'FLUSHING'],
  [SHUTDOWN_REQUESTED, 'SHUTDOWN_REQUESTED'],
  [SHUTDOWN_SENT, 'SHUTDOWN_SENT'],
  [PEER_CLOSED, 'PEER_CLOSED'],
  [CLOSED, 'CLOSED'],
  [WANT_WRITABLE, 'WANT_WRITABLE'],
  [WANT_READABLE, 'WANT_READABLE'],
  [WRITE_WAITS_READ, 'WRITE_WAITS_READ'],
  [READ_WAITS_WRITE, 'READ_WAITS_WRITE'],
  [UPSTREAM_EOF, 'UPSTREAM_EOF'],
  [SHUTDOWN_FLUSHED, 'SHUTDOWN_FLUSHED'],
  [PEER_SHUT_WRITES, 'PEER_SHUT_WRITES'],
];
