/**
 * `shardtls serve`: terminates TLS on every core and runs a handler.
 *
 * Options come from an optional JSON config file, then from flags, which override it. Invalid
 * input is a `ConfigError` that the CLI prints as one line with exit status 2.
 */
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { InvalidArgumentError, Option, type Command } from 'commander';

import { ShardTlsError } from '../shared/codes.js';
import {
  BALANCE_POLICIES,
  ConfigError,
  LOG_LEVELS,
  TLS_VERSIONS,
  TRANSPORTS,
  resolveServerOptions,
  type ServerOptions,
  type ServerOptionsInput,
} from '../shared/config.js';
import { createLogger, type Logger } from '../shared/log.js';
import { certificateSummary, generateSelfSigned } from './certs.js';
import { createServer, type ShardTlsServer } from './server.js';

/** Flag values as commander stores them; absent flags are undefined so the config file wins. */
interface ServeFlags {
  config?: string;
  host?: string;
  port?: number;
  backlog?: number;
  shards?: number;
  transport?: (typeof TRANSPORTS)[number];
  balance?: (typeof BALANCE_POLICIES)[number];
  cert?: string[];
  key?: string[];
  passphraseEnv?: string;
  ca?: string[];
  requestCert?: boolean;
  requireCert?: boolean;
  alpn?: string[];
  minVersion?: (typeof TLS_VERSIONS)[number];
  maxVersion?: (typeof TLS_VERSIONS)[number];
  ciphers?: string;
  ciphersuites?: string;
  handler?: string;
  backend?: string;
  maxConnections?: number;
  handshakeTimeout?: number;
  drainTimeout?: number;
  statsPort?: number;
  logLevel?: (typeof LOG_LEVELS)[number];
}

const SERVE_NOTES = `
Without --cert and --key, serve generates a self-signed certificate for localhost, 127.0.0.1
and ::1 (valid 7 days) and logs its SHA-256 fingerprint.

Signals: SIGINT or SIGTERM stops accepting, drains open connections until --drain-timeout, then
exits 0 (a second signal exits at once). SIGHUP re-reads the certificate files.

Invalid input prints one line on stderr and exits with status 2.`;

/** Registers `shardtls serve` on a commander program. */
export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description('terminate TLS on every core and run a handler (echo, proxy or a module)')
    .option('--config <file>', 'JSON file of server options; flags override it')
    .option('--host <address>', 'address to listen on (default: 127.0.0.1)')
    .option('--port <port>', 'TCP port to listen on, 0 for any free port (default: 8443)', port)
    .option('--backlog <count>', 'queue length of pending TCP connections (default: 511)', count)
    .option('--shards <count>', 'worker threads that run TLS (default: available cores)', count)
    .addOption(choice('--transport <kind>', 'how bytes reach shards (default: direct)', TRANSPORTS))
    .addOption(
      choice(
        '--balance <policy>',
        'how a shard is picked (default: round-robin)',
        BALANCE_POLICIES,
      ),
    )
    .addOption(
      repeatable('--cert <file>', 'PEM certificate chain; repeat for SNI, paired with --key'),
    )
    .addOption(repeatable('--key <file>', 'PEM private key of the --cert at the same position'))
    .option('--passphrase-env <name>', 'environment variable that contains the key passphrase')
    .addOption(repeatable('--ca <file>', 'PEM CA certificates that verify client certificates'))
    .option('--request-cert', 'ask clients for a certificate')
    .option('--require-cert', 'reject clients without a certificate that --ca verifies')
    .option('--alpn <list>', 'comma-separated ALPN protocols, most preferred first', list)
    .addOption(
      choice('--min-version <version>', 'lowest TLS version (default: TLSv1.2)', TLS_VERSIONS),
    )
    .addOption(
      choice('--max-version <version>', 'highest TLS version (default: TLSv1.3)', TLS_VERSIONS),
    )
    .option('--ciphers <list>', 'OpenSSL cipher list for TLS 1.2')
    .option('--ciphersuites <list>', 'OpenSSL cipher suites for TLS 1.3')
    .option('--handler <name>', "'echo', 'proxy' or the path of a handler module (default: echo)")
    .option('--backend <host:port>', 'plain TCP backend of the proxy handler, e.g. [::1]:9000')
    .option('--max-connections <count>', 'open connections over all shards (default: 10000)', count)
    .option(
      '--handshake-timeout <ms>',
      'milliseconds a TLS handshake may take (default: 10000)',
      count,
    )
    .option('--drain-timeout <ms>', 'milliseconds to drain on stop (default: 30000)', milliseconds)
    .option(
      '--stats-port <port>',
      'serve GET /stats as JSON on 127.0.0.1:<port> (plain HTTP)',
      port,
    )
    .addOption(
      choice('--log-level <level>', 'least severe level logged (default: info)', LOG_LEVELS),
    )
    .addHelpText('after', SERVE_NOTES)
    .action(async (flags: ServeFlags) => {
      await runServe(buildInput(flags), flags);
    });
}

/**
 * Merges the config file named by `--config` with the other flags.
 *
 * Returns the options input. Throws `ConfigError` when the config file is missing, unreadable or
 * not a JSON object, when --cert and --key counts differ, or when --passphrase-env names an unset
 * variable.
 */
export function buildInput(flags: ServeFlags): ServerOptionsInput {
  const input: Record<string, unknown> = flags.config === undefined ? {} : readConfig(flags.config);
  const tls: Record<string, unknown> = { ...(input.tls as Record<string, unknown> | undefined) };

  const plain: [keyof ServeFlags, string][] = [
    ['host', 'host'],
    ['port', 'port'],
    ['backlog', 'backlog'],
    ['shards', 'shards'],
    ['transport', 'transport'],
    ['balance', 'balance'],
    ['handler', 'handler'],
    ['backend', 'backend'],
    ['maxConnections', 'maxConnections'],
    ['handshakeTimeout', 'handshakeTimeoutMs'],
    ['drainTimeout', 'drainTimeoutMs'],
    ['statsPort', 'statsPort'],
    ['logLevel', 'logLevel'],
  ];
  for (const [flag, option] of plain) {
    if (flags[flag] !== undefined) input[option] = flags[flag];
  }

  const tlsFlags: [keyof ServeFlags, string][] = [
    ['requestCert', 'requestCert'],
    ['requireCert', 'requireCert'],
    ['alpn', 'alpnProtocols'],
    ['minVersion', 'minVersion'],
    ['maxVersion', 'maxVersion'],
    ['ciphers', 'ciphers'],
    ['ciphersuites', 'ciphersuites'],
  ];
  for (const [flag, option] of tlsFlags) {
    if (flags[flag] !== undefined) tls[option] = flags[flag];
  }
  if (flags.ca !== undefined) tls.ca = flags.ca;

  const certs = flags.cert ?? [];
  const keys = flags.key ?? [];
  if (certs.length !== keys.length) {
    throw new ConfigError(
      '--cert',
      `got ${certs.length} --cert and ${keys.length} --key: ` +
        'pass one --key for each --cert, in the same order',
    );
  }
  let passphrase: string | undefined;
  if (flags.passphraseEnv !== undefined) {
    passphrase = process.env[flags.passphraseEnv];
    if (passphrase === undefined) {
      throw new ConfigError(
        '--passphrase-env',
        `invalid --passphrase-env ${flags.passphraseEnv}: the environment variable is not set; ` +
          'export it before starting serve',
      );
    }
  }
  if (certs.length > 0) {
    tls.certs = certs.map((cert, i) =>
      passphrase === undefined ? { cert, key: keys[i] } : { cert, key: keys[i], passphrase },
    );
  }

  if (Object.keys(tls).length > 0) input.tls = tls;
  return input as ServerOptionsInput;
}

/**
 * Validates the options, starts the server and runs until a stop signal.
 *
 * Rejects with `ConfigError` for invalid options. Rejects with the `ShardTlsError` of `listen`
 * (for example `EADDRINUSE`) when the address cannot be bound. The CLI maps both to exit status 2.
 */
async function runServe(input: ServerOptionsInput, flags: ServeFlags): Promise<void> {
  const options = resolveWithFlagNames(input, flags);
  const log = createLogger({ level: options.logLevel, name: 'shardtls' });

  const serverInput = await withCertificate(input, options, log);
  const server = createServer(serverInput, { logger: log });

  // The server itself logs listening, draining, closed and reloaded, with their details.
  server.on('error', (error: unknown) => log.error({ err: error }, 'server error'));
  // The pool logs each shard exit and restart itself.
  await server.listen();

  let statsServer: HttpServer | undefined;
  if (options.statsPort !== undefined) {
    try {
      statsServer = await startStatsServer(options.statsPort, server, log);
    } catch (error) {
      // Nothing has been served yet, so the TLS port closes at once.
      await server.close({ deadlineMs: 0 });
      throw error;
    }
  }

  handleSignals(server, statsServer, options, log);
}

/**
 * Resolves the options like `resolveServerOptions`, but a `ConfigError` about a value that came
 * from a flag names the flag (`--cert #2`) in place of the option path (`tls.certs[1].cert`).
 */
function resolveWithFlagNames(input: ServerOptionsInput, flags: ServeFlags): ServerOptions {
  try {
    return resolveServerOptions(input);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;

    const flag = flagOf(error.option, flags);
    if (flag === undefined) throw error;
    const message = error.message
      .replace(/\btls\.(?:certs\[\d+\]\.(?:cert|key)|ca(?:\[\d+\])?)/g, (option) => {
        return flagOf(option, flags) ?? option;
      })
      .replace(new RegExp(`^(invalid|missing) ${error.option}\\b`), `$1 ${flag}`);
    throw new ConfigError(flag, message, { cause: error });
  }
}

/** Returns the flag that set an option path, or undefined when the config file set it. */
function flagOf(option: string, flags: ServeFlags): string | undefined {
  const listed = /^tls\.(certs|ca)\[(\d+)\](?:\.(cert|key))?$/.exec(option);
  if (listed !== null) {
    const name = listed[1] === 'ca' ? 'ca' : (listed[3] as 'cert' | 'key');
    const values = flags[name];
    if (values === undefined) return undefined;
    return values.length === 1 ? `--${name}` : `--${name} #${Number(listed[2]) + 1}`;
  }
  if (option === 'tls.ca' && flags.ca !== undefined) return '--ca';
  if (option === 'handler' && flags.handler !== undefined) return '--handler';
  if (option === 'backend' && flags.backend !== undefined) return '--backend';
  return undefined;
}

/** Adds a generated self-signed certificate when none was given, and logs the one in use. */
async function withCertificate(
  input: ServerOptionsInput,
  options: ServerOptions,
  log: Logger,
): Promise<ServerOptionsInput> {
  if (options.tls.certs.length > 0) {
    for (const [i, entry] of options.tls.certs.entries()) {
      const summary = certificateSummary(entry.cert);
      if (summary.expired)
        log.warn({ index: i, ...summary }, 'certificate is outside its validity');
      else log.info({ index: i, ...summary }, 'certificate loaded');
    }
    return input;
  }

  const generated = await generateSelfSigned();
  log.warn(
    { fingerprint256: generated.fingerprint256, names: ['localhost', '127.0.0.1', '::1'] },
    'no certificate given: serving a self-signed one that clients do not trust; ' +
      'pass --cert and --key for production',
  );
  const tls = { ...input.tls, certs: [{ cert: generated.cert, key: generated.key }] };
  return { ...input, tls };
}

/** Stops on SIGINT/SIGTERM after draining, exits at once on a second one, reloads on SIGHUP. */
function handleSignals(
  server: ShardTlsServer,
  statsServer: HttpServer | undefined,
  options: ServerOptions,
  log: Logger,
): void {
  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      log.warn({ signal }, 'second stop signal: exiting without waiting for the drain');
      process.exit(1);
    }
    stopping = true;
    log.info({ signal, drainTimeoutMs: options.drainTimeoutMs }, 'stopping');
    statsServer?.close();
    server.close({ deadlineMs: options.drainTimeoutMs }).then(
      () => {
        log.info('stopped');
        process.exit(0);
      },
      (error: unknown) => {
        log.error({ err: error }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);

  process.on('SIGHUP', () => {
    log.info('reloading certificates');
    server.reload().then(
      () => {}, // the server logs the reload with each certificate's summary
      (error: unknown) =>
        log.error({ err: error }, 'certificate reload failed; keeping the old ones'),
    );
  });
}

/**
 * Starts the plain HTTP stats endpoint on 127.0.0.1: `GET /stats` returns the server's stats and
 * `process.memoryUsage()` as JSON.
 *
 * Resolves once it listens. Rejects with a `ShardTlsError` whose code is the listen error code
 * (for example `EADDRINUSE`) and whose message names the port.
 */
async function startStatsServer(
  statsPort: number,
  server: ShardTlsServer,
  log: Logger,
): Promise<HttpServer> {
  const http = createHttpServer((request, response) => {
    if (request.url !== '/stats') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found: use GET /stats\n');
      return;
    }
    if (request.method !== 'GET') {
      response.writeHead(405, { allow: 'GET' }).end();
      return;
    }
    server.stats().then(
      (stats) => {
        const body = JSON.stringify({ memory: process.memoryUsage(), ...stats });
        response.writeHead(200, { 'content-type': 'application/json' }).end(body);
      },
      (error: unknown) => {
        log.error({ err: error }, 'stats request failed');
        response.writeHead(500, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ error: String(error) }));
      },
    );
  });

  await new Promise<void>((resolve, reject) => {
    http.once('error', (error: NodeJS.ErrnoException) => {
      const message =
        `cannot listen for stats on 127.0.0.1:${statsPort}: ${error.code ?? error.message}; ` +
        'pick another --stats-port';
      reject(new ShardTlsError(error.code ?? 'ERR_LISTEN', message, { cause: error }));
    });
    http.listen(statsPort, '127.0.0.1', resolve);
  });
  const bound = http.address() as AddressInfo;
  log.info({ address: `127.0.0.1:${bound.port}` }, 'stats endpoint listening');
  return http;
}

function readConfig(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'file not found, check the path' : String(code);
    throw new ConfigError('--config', `failed to read --config file '${file}': ${reason}`);
  }

  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ConfigError(
      '--config',
      `invalid --config file '${file}': ${(error as Error).message}; fix the JSON`,
    );
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ConfigError(
      '--config',
      `invalid --config file '${file}': expected a JSON object of server options`,
    );
  }
  return value as Record<string, unknown>;
}

function choice(flags: string, description: string, choices: readonly string[]): Option {
  return new Option(flags, description).choices(choices);
}

/** Creates an option that may be repeated; its value is the list in command-line order. */
function repeatable(flags: string, description: string): Option {
  return new Option(flags, description).argParser((value: string, previous?: string[]) => [
    ...(previous ?? []),
    value,
  ]);
}

function list(value: string): string[] {
  return value
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

function integer(value: string, min: number, max: number): number {
  const parsed = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(parsed) || parsed < min || parsed > max) {
    throw new InvalidArgumentError(`Use an integer from ${min} to ${max}.`);
  }
  return parsed;
}

function port(value: string): number {
  return integer(value, 0, 65535);
}

function count(value: string): number {
  return integer(value, 1, Number.MAX_SAFE_INTEGER);
}

function milliseconds(value: string): number {
  return integer(value, 0, Number.MAX_SAFE_INTEGER);
}
