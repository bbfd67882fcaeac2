/**
 * The TLS contexts of one shard, built from the server's certificate options.
 *
 * Each shard builds its own SSL_CTX from the same plain-data options. A reload swaps in a new
 * context for new handshakes; engines already made keep the old one alive until they end.
 */
import type { TlsOptions } from '../shared/config.js';
import { createSecureContext, type SecureContext } from '../tls/context.js';
import type { TlsEngine } from '../tls/engine.js';
import { createEngine } from '../tls/openssl-engine.js';

/** The server side TLS of a shard: one context, and an engine per connection. */
export class ServerTls {
  private context: SecureContext;
  private readonly ticketKeys: Uint8Array;

  /**
   * Builds the context; `ticketKeys` seal session tickets, shared by every shard of a server.
   * Throws with a message naming the option OpenSSL rejected.
   */
  constructor(options: TlsOptions, ticketKeys: Uint8Array) {
    this.ticketKeys = ticketKeys;
    this.context = buildContext(options, ticketKeys);
  }

  /** Returns a server engine for a new connection. */
  newEngine(): TlsEngine {
    return createEngine(this.context, { isServer: true });
  }

  /** Builds a context from `options` and uses it for new connections. Throws as the constructor. */
  reload(options: TlsOptions): void {
    const next = buildContext(options, this.ticketKeys);
    const previous = this.context;
    this.context = next;
    previous.destroy();
  }
}

function buildContext(options: TlsOptions, ticketKeys: Uint8Array): SecureContext {
  const [first, ...others] = options.certs;
  if (first === undefined) throw new Error('no certificate: tls.certs is empty');

  return createSecureContext({
    cert: first.cert,
    key: first.key,
    passphrase: first.passphrase,
    ca: options.ca,
    requestCert: options.requestCert || options.requireCert,
    requireCert: options.requireCert,
    alpnProtocols: options.alpnProtocols.length > 0 ? options.alpnProtocols : undefined,
    minVersion: options.minVersion,
    maxVersion: options.maxVersion,
    ciphers: options.ciphers,
    ciphersuites: options.ciphersuites,
    sessionTickets: options.sessionTickets,
    ticketKeys,
    sniContexts: others.map((entry) => ({
      cert: entry.cert,
      key: entry.key,
      passphrase: entry.passphrase,
      names: entry.names.length > 0 ? entry.names : undefined,
    })),
  });
}
