/**
 * shardtls: a multi-core TLS service for Node.js.
 *
 * `createServer` starts the shard pool and listens; handler modules receive each `TlsSocket`
 * with its `ConnectionContext`. The engine, the TlsSocket and the result codes are exported for
 * applications that drive TLS over their own transport.
 */
export {
  createServer,
  ShardTlsServer,
  type CloseOptions,
  type CreateServerExtras,
  type ServerStats,
} from './main/server.js';
export {
  ConfigError,
  resolveServerOptions,
  type ServerOptions,
  type ServerOptionsInput,
  type TlsOptions,
  type CertificateOptions,
} from './shared/config.js';
export * from './shared/codes.js';
export { iovAdvance, iovIsEmpty, iovLength, type IoVec } from './shared/iovec.js';
export type { PeerAddress, ShardStats, TransportKind } from './shared/messages.js';
export type { ConnectionContext, ConnectionHandler } from './worker/handler.js';
export type { TlsEngine, TlsSessionInfo, PeerCertificateSummary } from './tls/engine.js';
export type { Upstream, UpstreamHandler } from './tls/upstream.js';
export { TlsSocket } from './tls/tls-socket.js';
export { FlushTracker } from './tls/flush-tracker.js';
export { createMemoryPipe } from './tls/memory-pipe.js';
export { generateSelfSigned } from './main/certs.js';
