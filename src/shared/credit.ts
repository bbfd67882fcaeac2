/**
 * Per-connection credit windows for the relay rings.
 *
 * Each direction of each relayed connection has a window of W bytes. The sender starts with W
 * bytes of credit and spends one byte of credit per DATA payload byte. The receiver buffers at
 * most W bytes for the connection, and once the application has consumed at least half of the
 * window it sends a CREDIT record that returns those bytes to the sender. So a connection never
 * has more than W bytes in a ring plus the receiver's buffer, and a connection whose reader
 * stalls stops its sender without stopping its neighbours on the same ring.
 *
 * No deadlock is possible: a sender with zero credit means W bytes sit unconsumed or ungranted
 * at the receiver, and consuming them reaches the half-window threshold, which grants credit.
 */
import { MAX_WINDOW, MIN_WINDOW } from './layout.js';

/**
 * Checks a window size from options and returns it.
 *
 * Throws a RangeError when `window` is not an integer from MIN_WINDOW to MAX_WINDOW bytes.
 */
export function checkWindow(window: number, name: string): number {
  if (!Number.isInteger(window) || window < MIN_WINDOW || window > MAX_WINDOW) {
    throw new RangeError(
      `invalid ${name} ${window}: use an integer from ${MIN_WINDOW} to ${MAX_WINDOW} bytes`,
    );
  }
  return window;
}

/** The sending side's credit for one direction of one connection. */
export class SendCredit {
  /** Bytes that may be sent now without exceeding the receiver's window. */
  available: number;

  constructor(window: number) {
    this.available = window;
  }

  /** Spends `n` bytes of credit. The caller never spends more than `available`. */
  spend(n: number): void {
    this.available -= n;
  }

  /** Adds `n` bytes granted by a CREDIT record. */
  grant(n: number): void {
    this.available += n;
  }
}

/** The receiving side's window for one direction of one connection. */
export class ReceiveWindow {
  /** Window size in bytes: the most the sender may have outstanding. */
  readonly window: number;
  /** Bytes received and not yet consumed by the application. */
  buffered = 0;
  /** Bytes consumed and not yet granted back to the sender. */
  ungranted = 0;

  constructor(window: number) {
    this.window = window;
  }

  /**
   * Records `n` received bytes. Returns false when they exceed the window, which means the
   * sender broke the protocol.
   */
  receive(n: number): boolean {
    this.buffered += n;
    return this.buffered + this.ungranted <= this.window;
  }

  /**
   * Records `n` consumed bytes. Returns the bytes to grant back now (0 while less than half the
   * window waits to be granted, so CREDIT records stay batched).
   */
  consume(n: number): number {
    this.buffered -= n;
    this.ungranted += n;
    if (this.ungranted * 2 < this.window) return 0;
    return this.takeGrant();
  }

  /** Returns all ungranted bytes and resets the count, for a grant sent now. */
  takeGrant(): number {
    const grant = this.ungranted;
    this.ungranted = 0;
    return grant;
  }
}
