/**
 * What a connection handler sees: the plaintext `TlsSocket` and the context of its shard.
 *
 * A handler runs inside a shard for each connection once its handshake is complete. It resolves
 * (or returns) when it is done with the connection; the shard then sends close_notify, waits for
 * the detached flush and closes the socket. A handler that throws or rejects closes its own
 * connection only: the error is logged with the shard and connection ids.
 */
import type { Logger } from 'pino';

import type { PeerAddress } from '../shared/messages.js';
import type { ServerOptions } from '../shared/config.js';
import type { TlsSocket } from '../tls/tls-socket.js';

/** The context of one connection inside its shard. */
export interface ConnectionContext {
  shardId: number;
  connId: number;
  peer: PeerAddress;
  /** A pino logger bound to `shard` and `conn`. Never log plaintext or key material with it. */
  log: Logger;
  /**
   * Aborted when the shard drains. A handler then finishes the data it already read, returns,
   * and lets the shard send close_notify. After the drain deadline the socket is closed anyway.
   */
  signal: AbortSignal;
  /** The resolved server options (for example `backend` for a proxy). */
  options: ServerOptions;
}

/** A connection handler: the default export of a handler module. */
export type ConnectionHandler = (socket: TlsSocket, context: ConnectionContext) => unknown;
