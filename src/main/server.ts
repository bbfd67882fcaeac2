/**
 * The service API: `createServer(options)` listens on one TCP port and shards the connections
 * over worker-thread proactors that terminate TLS and run the handler.
 */
import { EventEmitter } from 'node:events';
import net, { type AddressInfo } from 'node:net';

import { ShardTlsError } from '../shared/codes.js';
import {
  ConfigError,
  resolveServerOptions,
  type ServerOptions,
  type ServerOptionsInput,
  type TlsOptions,
} from '../shared/config.js';
import { createLogger, type Logger } from '../shared/log.js';
import type { ShardStats, TransportKind } from '../shared/messages.js';
import { certificateSummary, generateSelfSigned } from './certs.js';
import { ShardPool } from './pool.js';

/** Options of `createServer` that are not server settings. */
export interface CreateServerExtras {
  /** The logger of the main thread; a pino logger at `options.logLevel` by default. */
  logger?: Logger;
}

/** Counters of the whole server. */
export interface ServerStats {
  transport: TransportKind | null;
  connections: {
    /** Open now, across every shard. */
    open: number;
    /** Accepted since `listen()`, including the rejected ones. */
    accepted: number;
    /** Closed at once because `maxConnections` were open. */
    rejected: number;
  };
  /** Shards restarted after they died. */
  shardRestarts: number;
  shards: ShardStats[];
}

/** Maximum drain deadline: the maximum delay of a Node timer (2^31 - 1 ms, about 24.8 days). */
const MAX_DEADLINE_MS = 2_147_483_647;

/** Options of `close()`. */
export interface CloseOptions {
  /** Time for open connections to finish before they are closed; `drainTimeoutMs` by default. */
  deadlineMs?: number;
}

/**
 * A sharded TLS server.
 *
 * Events:
 * - `'listening'` (address): the port is open and every shard is ready;
 * - `'error'` (error): a failure after `listen()` resolved, such as an accept error;
 * - `'drain'`: `close()` stopped accepting and the shards are draining;
 * - `'close'`: every shard has stopped;
 * - `'shard-exit'` (shardId, exitCode): a shard died; it is restarted and the others go on.
 */
export class ShardTlsServer extends EventEmitter {
  /** The resolved options (certificate files already read). */
  readonly options: ServerOptions;

  private readonly input: ServerOptionsInput;
  private readonly log: Logger;
  private pool: ShardPool | null = null;
  private listener: net.Server | null = null;
  private generated: TlsOptions['certs'] | null = null;
  private accepted = 0;
  private rejected = 0;
  private closing: Promise<void> | null = null;

  /**
   * Checks the options at once. Throws `ConfigError` (code `ERR_CONFIG`) with a one-line message
   * that names the option, for every invalid value.
   */
  constructor(input: ServerOptionsInput = {}, extras: CreateServerExtras = {}) {
    super();
    this.input = input;
    this.options = resolveServerOptions(input);
    this.log = extras.logger ?? createLogger({ level: this.options.logLevel, name: 'shardtls' });
  }

  /**
   * Starts the shards and opens the port.
   *
   * Resolves with the bound address. Rejects with a `ShardTlsError`: `EADDRINUSE` or `EACCES` when
   * the port cannot be opened, `ERR_SHARD_START` when a shard cannot start (a handler module that
   * does not load, a certificate its engine rejects), `ERR_SERVER_STATE` when called twice.
   */
  async listen(): Promise<AddressInfo> {
    if (this.closing !== null) {
      throw new ShardTlsError('ERR_SERVER_STATE', 'listen() after close(): create a new server');
    }
    if (this.pool !== null) throw new ShardTlsError('ERR_SERVER_STATE', 'listen() called twice');
    const options = this.options;

    // 1. A certificate. Without one, a self-signed one for local use.
    if (options.tls.certs.length === 0) {
      const generated = await generateSelfSigned();
      this.generated = [{ cert: generated.cert, key: generated.key, names: [] }];
      options.tls.certs = this.generated;
      this.log.warn(
        { fingerprint256: generated.fingerprint256 },
        'no certificate given: serving a self-signed certificate for localhost, 127.0.0.1 and ::1',
      );
    }

    if (options.handler === 'echo' && options.backend !== undefined) {
      this.log.warn(
        'the echo handler does not use the backend address; did you mean --handler proxy?',
      );
    }
    if (options.tls.requestCert && options.tls.ca === undefined) {
      this.log.warn(
        'client certificates are verified against the default CA store of the OpenSSL inside ' +
          'node; pass --ca (tls.ca) with the CA that signed them, or clients will be rejected',
      );
    }

    // 2. The shards.
    const pool = new ShardPool(options, this.log);
    this.pool = pool;
    pool.on('shard-exit', (shardId: number, code: number) =>
      this.emit('shard-exit', shardId, code),
    );
    try {
      await pool.start();
    } catch (err) {
      throw new ShardTlsError('ERR_SHARD_START', `cannot start shards: ${(err as Error).message}`, {
        cause: err,
      });
    }

    // 3. The port.
    const listener = net.createServer({ pauseOnConnect: true, allowHalfOpen: true });
    this.listener = listener;
    try {
      await new Promise<void>((resolve, reject) => {
        listener.once('error', reject);
        listener.listen(
          { host: options.host, port: options.port, backlog: options.backlog },
          () => {
            listener.off('error', reject);
            resolve();
          },
        );
      });
    } catch (err) {
      await pool.terminate();
      throw listenError(err as NodeJS.ErrnoException, options);
    }

    listener.on('connection', (socket) => this.accept(socket));
    listener.on('error', (err) => {
      this.log.error({ err: err.message }, 'accept failed');
      this.emit('error', err);
    });

    const address = listener.address() as AddressInfo;
    this.log.info(
      {
        address: address.address,
        port: address.port,
        shards: options.shards,
        transport: pool.transport,
        handler: options.handler,
      },
      'listening',
    );
    this.emit('listening', address);
    return address;
  }

  /** Returns the bound address, or null before `listen()` resolves and after `close()`. */
  address(): AddressInfo | null {
    const address = this.listener?.address();
    return address !== null && typeof address === 'object' ? address : null;
  }

  /** Counters of the server and of every shard that responds within 2 s. */
  async stats(): Promise<ServerStats> {
    const shards = this.pool === null ? [] : await this.pool.stats();
    return {
      transport: this.pool?.transport ?? null,
      connections: {
        open: this.pool?.openConnections ?? 0,
        accepted: this.accepted,
        rejected: this.rejected,
      },
      shardRestarts: this.pool?.restarts() ?? 0,
      shards,
    };
  }

  /**
   * Reads the certificate files again and rebuilds the TLS contexts of every shard. New
   * handshakes use the new certificates; open connections keep theirs. Throws `ConfigError` when
   * the new files are invalid, and the old certificates stay in use.
   */
  async reload(): Promise<void> {
    if (this.pool === null) throw new ShardTlsError('ERR_SERVER_STATE', 'reload() before listen()');
    if (this.closing !== null)
      throw new ShardTlsError('ERR_SERVER_STATE', 'reload() after close()');

    const fresh = resolveServerOptions(this.input).tls;
    if (fresh.certs.length === 0 && this.generated !== null) fresh.certs = this.generated;
    await this.pool.reload(fresh);
    this.options.tls = fresh;
    for (const [index, entry] of fresh.certs.entries()) {
      const { subject, subjectAltNames, validTo, fingerprint256 } = certificateSummary(entry.cert);
      this.log.info(
        { index, subject, subjectAltNames, validTo, fingerprint256 },
        'certificate reloaded',
      );
    }
  }

  /**
   * Stops accepting, lets open connections finish within the deadline (pending data, then
   * close_notify), then stops the shards. Resolves once everything is closed; safe to call twice.
   */
  close(options: CloseOptions = {}): Promise<void> {
    const deadlineMs = options.deadlineMs ?? this.options.drainTimeoutMs;
    if (!Number.isInteger(deadlineMs) || deadlineMs < 0 || deadlineMs > MAX_DEADLINE_MS) {
      // A caller bug, reported the way invalid server options are.
      return Promise.reject(
        new ConfigError(
          'deadlineMs',
          `invalid deadlineMs ${String(deadlineMs)}: use whole milliseconds from 0 to ` +
            `${MAX_DEADLINE_MS}`,
        ),
      );
    }
    this.closing ??= this.shutdown(deadlineMs);
    return this.closing;
  }

  private async shutdown(deadlineMs: number): Promise<void> {
    // Stop accepting. close()'s callback would wait for the relayed sockets this thread still
    // holds, which the drain below ends, so it is not awaited.
    this.listener?.close();

    this.emit('drain');
    const open = this.pool?.openConnections ?? 0;
    this.log.info({ open, deadlineMs }, 'draining');
    const forced = (await this.pool?.drain(deadlineMs)) ?? 0;

    this.listener = null;
    this.log.info({ forced }, 'closed');
    this.emit('close');
  }

  private accept(socket: net.Socket): void {
    this.accepted++;
    socket.on('error', () => {
      // A client reset before the shard took the socket: nothing to do but let it close.
    });

    if (this.pool === null || this.pool.openConnections >= this.options.maxConnections) {
      this.rejected++;
      if (this.rejected === 1 || this.rejected % 1000 === 0) {
        this.log.warn(
          { rejected: this.rejected, maxConnections: this.options.maxConnections },
          'connection limit reached; closing new connections',
        );
      }
      socket.destroy();
      return;
    }

    this.pool.dispatch(socket);
  }
}

/** Creates a server; see `ShardTlsServer`. Throws `ConfigError` for invalid options. */
export function createServer(
  options: ServerOptionsInput = {},
  extras: CreateServerExtras = {},
): ShardTlsServer {
  return new ShardTlsServer(options, extras);
}

function listenError(err: NodeJS.ErrnoException, options: ServerOptions): ShardTlsError {
  const where = `${options.host}:${options.port}`;
  if (err.code === 'EADDRINUSE') {
    return new ShardTlsError(
      'EADDRINUSE',
      `cannot listen on ${where}: the address is already in use; choose another port or stop ` +
        'the process that holds it',
      { cause: err },
    );
  }
  if (err.code === 'EACCES') {
    return new ShardTlsError(
      'EACCES',
      `cannot listen on ${where}: permission denied; use a port above 1023 or grant the ` +
        'capability to bind low ports',
      { cause: err },
    );
  }
  if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND') {
    return new ShardTlsError(
      err.code,
      `cannot listen on ${where}: no such local address; use an address of this machine`,
      { cause: err },
    );
  }
  return new ShardTlsError(err.code ?? 'ERR_LISTEN', `cannot listen on ${where}: ${err.message}`, {
    cause: err,
  });
}
