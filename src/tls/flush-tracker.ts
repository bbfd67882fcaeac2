/**
 * Counts the detached flushes of one owner (a shard), so it can wait until all have ended.
 *
 * A TlsSocket calls `started` when it begins a detached flush and `ended` exactly once when that
 * flush ends, whether it drained, failed or the socket was closed.
 */
export class FlushTracker {
  /** Detached flushes running now. */
  running = 0;
  /** Detached flushes started since the tracker was made. */
  totalStarted = 0;
  private waiters: Array<() => void> = [];

  /** Records the start of a detached flush. */
  started(): void {
    this.running++;
    this.totalStarted++;
  }

  /** Records the end of a detached flush, and wakes `idle()` waiters when none is left. */
  ended(): void {
    if (this.running === 0) throw new Error('FlushTracker.ended() called with no flush running');
    this.running--;
    if (this.running > 0 || this.waiters.length === 0) return;

    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  /** Resolves once no detached flush is running (at once when none is). Never rejects. */
  idle(): Promise<void> {
    if (this.running === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}
