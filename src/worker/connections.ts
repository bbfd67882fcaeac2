/**
 * The connections of one shard: handshake, handler, close, drain and counters.
 *
 * Both transports end here. The direct transport brings a `NetUpstream` over the shard's own
 * socket, the relay transport a `RingSocket` over the rings; from this point on a connection is a
 * `TlsSocket` over an `Upstream`, whichever transport carries it.
 */
import type { Logger } from 'pino';

import { codeName } from '../shared/codes.js';
import type { ServerOptions } from '../shared/config.js';
import type { PeerAddress, ShardStats, TransportKind } from '../shared/messages.js';
import type { TlsEngine } from '../tls/engine.js';
import { FlushTracker } from '../tls/flush-tracker.js';
import { TlsSocket } from '../tls/tls-socket.js';
import type { Upstream } from '../tls/upstream.js';
import type { ConnectionContext, ConnectionHandler } from './handler.js';

/** Byte counters that an upstream keeps for the shard's stats. */
export interface CountingUpstream extends Upstream {
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** Resolves once the transport has let go of the connection after `close()`. */
  whenReleased?(): Promise<void>;
}

interface Connection {
  socket: TlsSocket;
  upstream: CountingUpstream;
  abort: AbortController;
}

/** Time allowed for close_notify to leave before a closing socket is cut off. */
const CLOSE_NOTIFY_TIMEOUT_MS = 5_000;

/** Runs every connection of one shard. */
export class ConnectionHost {
  readonly flushes = new FlushTracker();

  private readonly shardId: number;
  private readonly transport: TransportKind;
  private readonly log: Logger;
  private readonly live = new Map<number, Connection>();
  private readonly handler: ConnectionHandler;
  private readonly options: ServerOptions;
  private draining = false;
  private drained: (() => void) | null = null;

  // Counters for `stats()`; bytes of closed connections are folded into the totals.
  private connectionsTotal = 0;
  private handshakesDone = 0;
  private handshakesFailed = 0;
  private handlerErrors = 0;
  private closedBytesIn = 0;
  private closedBytesOut = 0;

  /** Called with the number of connections that closed, batched per event-loop turn. */
  onClosed: (count: number) => void = () => {};
  private closedPending = 0;

  constructor(
    shardId: number,
    transport: TransportKind,
    options: ServerOptions,
    handler: ConnectionHandler,
    log: Logger,
  ) {
    this.shardId = shardId;
    this.transport = transport;
    this.options = options;
    this.handler = handler;
    this.log = log;
  }

  /** The number of open connections. */
  get size(): number {
    return this.live.size;
  }

  /**
   * Runs one connection to its end: handshake (with the configured timeout), the handler, then
   * close_notify and close. Never rejects: every failure is counted and logged here.
   */
  async serve(connId: number, upstream: CountingUpstream, engine: TlsEngine, peer: PeerAddress) {
    const socket = new TlsSocket(upstream, engine, {
      handshakeTimeoutMs: this.options.handshakeTimeoutMs,
      flushes: this.flushes,
    });
    const abort = new AbortController();
    const connection: Connection = { socket, upstream, abort };
    const log = this.log.child({ conn: connId });

    this.live.set(connId, connection);
    this.connectionsTotal++;
    if (this.draining) abort.abort();

    try {
      // 1. Handshake. A failure is the client's problem (plaintext on the TLS port, a bad
      //    certificate, a scanner), so it is logged at debug level and counted.
      try {
        await socket.handshake();
        this.handshakesDone++;
      } catch (err) {
        this.handshakesFailed++;
        // The engine's own error carries OpenSSL's reason ("peer did not return a certificate").
        const reason = errorText(socket.error ?? err);
        log.debug({ err: reason, peer: peer.address }, 'handshake failed');
        return;
      }

      // 2. The handler. An exception closes this connection only.
      const context: ConnectionContext = {
        shardId: this.shardId,
        connId,
        peer,
        log,
        signal: abort.signal,
        options: this.options,
      };
      try {
        // An exception in a readiness callback fails this connection like a rejection does.
        const callbackFailed = new Promise<never>((_, reject) => {
          socket.onCallbackError = reject;
        });
        callbackFailed.catch(() => {}); // a failure after the handler resolved has no waiter
        await Promise.race([this.handler(socket, context), callbackFailed]);
      } catch (err) {
        this.handlerErrors++;
        const stack = err instanceof Error ? err.stack : undefined;
        log.error({ err: errorText(err), stack }, 'handler failed; closing its connection');
        return;
      }

      // 3. A clean end: flush what is pending, then close_notify (RFC 8446 section 6.1).
      await closeNotify(socket);
    } finally {
      socket.close();
      await upstream.whenReleased?.();
      this.live.delete(connId);
      this.closedBytesIn += upstream.bytesIn;
      this.closedBytesOut += upstream.bytesOut;
      this.noteClosed();
      if (this.draining && this.live.size === 0) this.drained?.();
    }
  }

  /**
   * Asks every handler to finish (its `signal` aborts), waits until all connections have closed
   * or `deadlineMs` passes, then closes the rest. Resolves to the number closed by force.
   */
  async drain(deadlineMs: number): Promise<number> {
    this.draining = true;
    for (const connection of this.live.values()) connection.abort.abort();
    if (this.live.size === 0) return 0;

    const allClosed = new Promise<void>((resolve) => (this.drained = resolve));
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, deadlineMs)));
    await Promise.race([allClosed, deadline]);
    clearTimeout(timer);

    const forced = this.live.size;
    if (forced > 0) this.log.warn({ forced }, 'drain deadline passed; closing connections');
    for (const connection of this.live.values()) connection.socket.close();
    return forced;
  }

  /** Counters of this shard, without the ring figures (the shard adds those). */
  stats(): ShardStats {
    let bytesIn = this.closedBytesIn;
    let bytesOut = this.closedBytesOut;
    for (const connection of this.live.values()) {
      bytesIn += connection.upstream.bytesIn;
      bytesOut += connection.upstream.bytesOut;
    }

    return {
      shardId: this.shardId,
      transport: this.transport,
      connectionsOpen: this.live.size,
      connectionsTotal: this.connectionsTotal,
      handshakesDone: this.handshakesDone,
      handshakesFailed: this.handshakesFailed,
      bytesIn,
      bytesOut,
      detachedFlushesRunning: this.flushes.running,
      detachedFlushesTotal: this.flushes.totalStarted,
      handlerErrors: this.handlerErrors,
      ringRxUsed: 0,
      ringTxUsed: 0,
      ringCapacity: 0,
      heapUsed: process.memoryUsage().heapUsed,
    };
  }

  private noteClosed(): void {
    if (this.closedPending++ > 0) return;
    setImmediate(() => {
      const count = this.closedPending;
      this.closedPending = 0;
      this.onClosed(count);
    });
  }
}

/** Sends close_notify after the pending data, bounded in time; a failed send is not an error. */
async function closeNotify(socket: TlsSocket): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, CLOSE_NOTIFY_TIMEOUT_MS);
  });
  try {
    await Promise.race([socket.shutdown(), timeout]);
  } catch {
    // The peer is gone already: there is nobody left to notify.
  } finally {
    clearTimeout(timer);
  }
}

/** Returns a one-line description of a caught error, with its code when it has one. */
export function errorText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    const name = typeof code === 'number' ? codeName(code) : code;
    return name === undefined ? err.message : `${String(name)}: ${err.message}`;
  }
  return String(err);
}
