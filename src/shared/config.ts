/**
 * Server options: one zod schema for what callers pass, and the resolved form that the main
 * thread posts to every shard.
 *
 * `resolveServerOptions` applies defaults, reads certificate and key files into PEM text, checks
 * that each key matches its certificate and returns plain data (no functions, no class instances)
 * so that it survives the structured clone of `postMessage`. Every failure is a `ConfigError`
 * whose message is one line naming the option, the value and the fix.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { createSecureContext } from 'node:tls';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { z } from 'zod';

import { ShardTlsError } from './codes.js';

/** A configuration error: the message is one line that names the option, the value and the fix. */
export class ConfigError extends ShardTlsError {
  /** Dotted path of the option at fault, for example `tls.certs[0].key`; empty for the whole. */
  readonly option: string;

  constructor(option: string, message: string, options?: { cause?: unknown }) {
    super('ERR_CONFIG', message, options);
    this.name = 'ConfigError';
    this.option = option;
  }
}

/** Log levels of pino, plus `silent`. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const TLS_VERSIONS = ['TLSv1.2', 'TLSv1.3'] as const;
export type TlsVersion = (typeof TLS_VERSIONS)[number];

export const TRANSPORTS = ['direct', 'relay'] as const;
export type Transport = (typeof TRANSPORTS)[number];

export const BALANCE_POLICIES = ['round-robin', 'least-connections'] as const;
export type BalancePolicy = (typeof BALANCE_POLICIES)[number];

/** The built-in handlers; any other handler is a module given by path or file URL. */
export const BUILTIN_HANDLERS = ['echo', 'proxy'] as const;

/** Maximum delay of a Node timer (2^31 - 1 ms); a longer one fires at once. */
const MAX_TIMER_MS = 2_147_483_647;

const KIB = 1024;
const MIB = 1024 * KIB;

/** Largest TLS plaintext record (RFC 8446 section 5.1): a credit window below it cannot move one. */
const MAX_RECORD_BYTES = 16 * KIB;

/** PEM text, PEM bytes, or the path of a PEM file. A string without `-----BEGIN ` is a path. */
const pemSource = z.union([z.string().min(1), z.instanceof(Uint8Array)]);

const port = z.number().int().min(0).max(65535);

const certificateEntry = z.strictObject({
  cert: pemSource,
  key: pemSource,
  passphrase: z.string().optional(),
  names: z.array(z.string().min(1)).optional(),
});

const tlsSchema = z.strictObject({
  certs: z.array(certificateEntry).default([]),
  ca: z.union([pemSource, z.array(pemSource)]).optional(),
  requestCert: z.boolean().default(false),
  requireCert: z.boolean().default(false),
  alpnProtocols: z.array(z.string().min(1).max(255)).default([]),
  minVersion: z.enum(TLS_VERSIONS).default('TLSv1.2'),
  maxVersion: z.enum(TLS_VERSIONS).optional(),
  ciphers: z.string().min(1).optional(),
  ciphersuites: z.string().min(1).optional(),
  sessionTickets: z.boolean().default(true),
});

/** The schema of `ServerOptionsInput`: shapes, ranges and defaults, before files are read. */
export const serverOptionsSchema = z.strictObject({
  host: z.string().min(1).default('127.0.0.1'),
  port: port.default(8443),
  backlog: z.number().int().min(1).default(511),
  shards: z
    .number()
    .int()
    .min(1)
    .max(1024)
    .default(() => availableParallelism()),
  transport: z.enum(TRANSPORTS).default('direct'),
  balance: z.enum(BALANCE_POLICIES).default('round-robin'),
  tls: tlsSchema.prefault({}),
  handler: z.string().min(1).default('echo'),
  backend: z
    .union([z.string().min(1), z.strictObject({ host: z.string().min(1), port: port.min(1) })])
    .optional(),
  maxConnections: z.number().int().min(1).default(10_000),
  handshakeTimeoutMs: z.number().int().min(1).max(MAX_TIMER_MS).default(10_000),
  drainTimeoutMs: z.number().int().min(0).max(MAX_TIMER_MS).default(30_000),
  logLevel: z.enum(LOG_LEVELS).default('info'),
  statsPort: port.optional(),
  ringBytes: z
    .number()
    .int()
    .min(64 * KIB)
    .max(1024 * MIB)
    .default(4 * MIB),
  creditBytes: z
    .number()
    .int()
    .min(MAX_RECORD_BYTES)
    .default(256 * KIB),
});

/** Options as library users and the CLI pass them: every field optional, PEM as text, bytes or a path. */
export type ServerOptionsInput = z.input<typeof serverOptionsSchema>;

/** One certificate chain and its key, as PEM text. */
export interface CertificateOptions {
  /** The leaf certificate, optionally followed by its intermediates. */
  cert: string;
  /** The private key, encrypted when `passphrase` is set. */
  key: string;
  passphrase?: string;
  /** Server names (SNI) that select this certificate, lower case; from the SANs if not given. */
  names: string[];
}

/** TLS settings shared by every shard. */
export interface TlsOptions {
  /** The first is the default; the others are chosen by SNI. Empty: generate a self-signed one. */
  certs: CertificateOptions[];
  /** CA certificates (PEM) that verify client certificates. */
  ca?: string[];
  /** Ask clients for a certificate. `requireCert` implies it. */
  requestCert: boolean;
  /** Reject clients without a certificate that `ca` verifies. */
  requireCert: boolean;
  /** ALPN protocol names in order of preference (RFC 7301). */
  alpnProtocols: string[];
  minVersion: TlsVersion;
  maxVersion?: TlsVersion;
  /** OpenSSL cipher list for TLS 1.2. */
  ciphers?: string;
  /** OpenSSL cipher suites for TLS 1.3. */
  ciphersuites?: string;
  /** Issue session tickets for resumption (RFC 8446 section 4.6.1). */
  sessionTickets: boolean;
}

/** A TCP address. */
export interface BackendAddress {
  host: string;
  port: number;
}

/** Resolved server options: defaults applied, files read, values checked; plain data only. */
export interface ServerOptions {
  host: string;
  port: number;
  backlog: number;
  shards: number;
  transport: Transport;
  balance: BalancePolicy;
  tls: TlsOptions;
  /** `'echo'`, `'proxy'`, or the absolute `file:` URL of a handler module. */
  handler: string;
  /** The plain TCP backend of the proxy handler (also passed to handler modules). */
  backend?: BackendAddress;
  maxConnections: number;
  handshakeTimeoutMs: number;
  drainTimeoutMs: number;
  logLevel: LogLevel;
  /** Port of the plain HTTP stats endpoint on 127.0.0.1; none when undefined. */
  statsPort?: number;
  /** Bytes of each relay ring (a power of two). */
  ringBytes: number;
  /** Bytes a relayed connection may have in flight in each direction. */
  creditBytes: number;
}

/** Base for resolving relative paths. */
export interface ResolveContext {
  /** Base directory of relative paths; `process.cwd()` by default. */
  cwd?: string;
}

/**
 * Resolves and checks server options.
 *
 * Returns plain data ready for `postMessage`. An empty `tls.certs` stays empty: the caller
 * generates a self-signed certificate (see `generateSelfSigned` in src/main/certs.ts).
 *
 * Throws `ConfigError` for an unknown option or a value of the wrong type or out of range. It also
 * throws for a missing or unreadable file, PEM that does not parse, a key that does not match its
 * certificate, and a wrong passphrase. Last come an invalid cipher list, a handler module that
 * does not exist, a backend that is not `HOST:PORT`, and the proxy handler without a backend.
 */
export function resolveServerOptions(
  input: ServerOptionsInput = {},
  context: ResolveContext = {},
): ServerOptions {
  const cwd = context.cwd ?? process.cwd();

  const parsed = serverOptionsSchema.safeParse(input, { reportInput: true });
  if (!parsed.success) throw issueToError(parsed.error.issues[0]);
  const options = parsed.data;

  const tls = resolveTls(options.tls, cwd);
  const handler = resolveHandler(options.handler, cwd);

  let backend: BackendAddress | undefined;
  if (typeof options.backend === 'string') backend = parseHostPort(options.backend, 'backend');
  else if (options.backend !== undefined) backend = { ...options.backend };
  if (handler === 'proxy' && backend === undefined) {
    throw new ConfigError(
      'backend',
      'missing backend: the proxy handler needs one, for example backend: "127.0.0.1:9000"',
    );
  }

  if ((options.ringBytes & (options.ringBytes - 1)) !== 0) {
    throw new ConfigError(
      'ringBytes',
      `invalid ringBytes ${options.ringBytes}: use a power of two, for example ${4 * MIB}`,
    );
  }
  if (options.creditBytes > options.ringBytes) {
    throw new ConfigError(
      'creditBytes',
      `invalid creditBytes ${options.creditBytes}: use at most ringBytes (${options.ringBytes})`,
    );
  }

  const resolved: ServerOptions = {
    host: options.host,
    port: options.port,
    backlog: options.backlog,
    shards: options.shards,
    transport: options.transport,
    balance: options.balance,
    tls,
    handler,
    maxConnections: options.maxConnections,
    handshakeTimeoutMs: options.handshakeTimeoutMs,
    drainTimeoutMs: options.drainTimeoutMs,
    logLevel: options.logLevel,
    ringBytes: options.ringBytes,
    creditBytes: options.creditBytes,
  };
  if (backend !== undefined) resolved.backend = backend;
  if (options.statsPort !== undefined) resolved.statsPort = options.statsPort;
  return resolved;
}

/**
 * Parses `host:port` or `[ipv6]:port`.
 *
 * Returns the address. Throws `ConfigError` naming `option` when the text has no port, the
 * port is not an integer from 1 to 65535, or an IPv6 address lacks its brackets.
 */
export function parseHostPort(text: string, option: string): BackendAddress {
  const match = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:[\]]+):(\d+)$/.exec(text);
  const portNumber = match === null ? NaN : Number(match[2]);
  if (match === null || !Number.isInteger(portNumber) || portNumber < 1 || portNumber > 65535) {
    throw new ConfigError(
      option,
      `invalid ${option} '${text}': use HOST:PORT with a port from 1 to 65535, ` +
        'for example 127.0.0.1:9000 or [::1]:9000',
    );
  }
  return { host: match[1], port: portNumber };
}

type ParsedTls = z.output<typeof tlsSchema>;
type PemSource = z.output<typeof pemSource>;

function resolveTls(tls: ParsedTls, cwd: string): TlsOptions {
  const certs = tls.certs.map((entry, i) => resolveCertificate(entry, `tls.certs[${i}]`, cwd));

  if (tls.maxVersion !== undefined && tls.maxVersion < tls.minVersion) {
    throw new ConfigError(
      'tls.maxVersion',
      `invalid tls.maxVersion ${tls.maxVersion}: it is below tls.minVersion ${tls.minVersion}; ` +
        'raise it or lower minVersion',
    );
  }
  checkCipherList(tls.ciphers, 'tls.ciphers');
  checkCipherList(tls.ciphersuites, 'tls.ciphersuites');

  const resolved: TlsOptions = {
    certs,
    requestCert: tls.requestCert || tls.requireCert,
    requireCert: tls.requireCert,
    alpnProtocols: [...tls.alpnProtocols],
    minVersion: tls.minVersion,
    sessionTickets: tls.sessionTickets,
  };
  if (tls.ca !== undefined) {
    const sources = Array.isArray(tls.ca) ? tls.ca : [tls.ca];
    resolved.ca = sources.map((source, i) => {
      const option = Array.isArray(tls.ca) ? `tls.ca[${i}]` : 'tls.ca';
      const pem = readPem(source, option, cwd);
      parseCertificates(pem, option);
      return pem;
    });
  }
  if (tls.maxVersion !== undefined) resolved.maxVersion = tls.maxVersion;
  if (tls.ciphers !== undefined) resolved.ciphers = tls.ciphers;
  if (tls.ciphersuites !== undefined) resolved.ciphersuites = tls.ciphersuites;
  return resolved;
}

function resolveCertificate(
  entry: z.output<typeof certificateEntry>,
  option: string,
  cwd: string,
): CertificateOptions {
  const cert = readPem(entry.cert, `${option}.cert`, cwd);
  const key = readPem(entry.key, `${option}.key`, cwd);
  const chain = parseCertificates(cert, `${option}.cert`);
  const privateKey = parsePrivateKey(key, entry.passphrase, `${option}.key`);

  if (!chain[0].checkPrivateKey(privateKey)) {
    throw new ConfigError(
      `${option}.key`,
      `${option}.key does not match ${option}.cert (subject ${chain[0].subject.replace(/\n/g, ', ')}): ` +
        'pass the key that was issued with this certificate',
    );
  }

  const names = (entry.names ?? certificateNames(chain[0])).map((name) => name.toLowerCase());
  const resolved: CertificateOptions = { cert, key, names };
  if (entry.passphrase !== undefined) resolved.passphrase = entry.passphrase;
  return resolved;
}

/** DNS names of a certificate's subjectAltName, or its common name when it has none. */
function certificateNames(certificate: X509Certificate): string[] {
  const names = (certificate.subjectAltName ?? '')
    .split(', ')
    .filter((entry) => entry.startsWith('DNS:'))
    .map((entry) => entry.slice('DNS:'.length));
  if (names.length > 0) return names;

  const commonName = /^CN=(.+)$/m.exec(certificate.subject);
  return commonName === null ? [] : [commonName[1]];
}

function readPem(source: PemSource, option: string, cwd: string): string {
  if (source instanceof Uint8Array) return Buffer.from(source).toString('utf8');
  if (source.includes('-----BEGIN ')) return source;

  const file = path.resolve(cwd, source);
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(option, `failed to read ${option} file '${file}': ${describe(error)}`, {
      cause: error,
    });
  }
}

function parseCertificates(pem: string, option: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) {
    throw new ConfigError(
      option,
      `invalid ${option}: no PEM certificate (-----BEGIN CERTIFICATE-----) found; ` +
        'pass a PEM certificate file',
    );
  }
  return blocks.map((block, i) => {
    try {
      return new X509Certificate(block);
    } catch (error) {
      throw new ConfigError(
        option,
        `invalid ${option}: certificate ${i + 1} does not parse (${describe(error)}); ` +
          'pass a PEM certificate file',
        { cause: error },
      );
    }
  });
}

function parsePrivateKey(pem: string, passphrase: string | undefined, option: string): KeyObject {
  try {
    return createPrivateKey({ key: pem, format: 'pem', passphrase });
  } catch (error) {
    const code = (error as { code?: string }).code;
    const encrypted = pem.includes('ENCRYPTED');
    let fix = 'pass a PEM private key file';
    if (encrypted && passphrase === undefined) fix = 'the key is encrypted: give its passphrase';
    else if (code === 'ERR_OSSL_BAD_DECRYPT' || (encrypted && passphrase !== undefined)) {
      fix = 'wrong passphrase: give the one the key was encrypted with';
    }
    throw new ConfigError(option, `invalid ${option}: the private key does not load; ${fix}`, {
      cause: error,
    });
  }
}

function checkCipherList(list: string | undefined, option: string): void {
  if (list === undefined) return;
  try {
    // Node splits a cipher string into TLS 1.3 suites (TLS_*) and a TLS 1.2 list itself.
    createSecureContext({ ciphers: list });
  } catch (error) {
    throw new ConfigError(
      option,
      `invalid ${option} '${list}': ${describe(error)}; see "openssl ciphers -v" for valid names`,
      { cause: error },
    );
  }
}

function resolveHandler(handler: string, cwd: string): string {
  if ((BUILTIN_HANDLERS as readonly string[]).includes(handler)) return handler;

  let file: string;
  try {
    file = handler.startsWith('file:') ? fileURLToPath(handler) : path.resolve(cwd, handler);
  } catch (error) {
    throw new ConfigError('handler', `invalid handler '${handler}': ${describe(error)}`, {
      cause: error,
    });
  }
  let isFile = false;
  try {
    isFile = statSync(file).isFile();
  } catch (error) {
    throw new ConfigError(
      'handler',
      `invalid handler '${handler}': module file '${file}' not found; ` +
        "use 'echo', 'proxy' or the path of a handler module",
      { cause: error },
    );
  }
  if (!isFile) {
    throw new ConfigError(
      'handler',
      `invalid handler '${handler}': '${file}' is not a file; give the path of a handler module`,
    );
  }
  return pathToFileURL(file).href;
}

/** Turns the first zod issue into a one-line `ConfigError`. Keys and passphrases are not shown. */
function issueToError(issue: z.core.$ZodIssue): ConfigError {
  const option = formatPath(issue.path);
  const secret = /(^|\.)(key|passphrase)$/.test(option);
  const value = secret ? '(hidden)' : formatValue(issue.input);
  const at = option === '' ? 'options' : option;

  switch (issue.code) {
    case 'unrecognized_keys':
      return new ConfigError(
        option,
        `unknown option ${issue.keys.map((key) => (option ? `${option}.${key}` : key)).join(', ')}: ` +
          'remove it or check the spelling',
      );
    case 'too_big':
    case 'too_small': {
      const bound = issue.code === 'too_big' ? 'at most' : 'at least';
      const limit = issue.code === 'too_big' ? issue.maximum : issue.minimum;
      const what = issue.origin === 'string' || issue.origin === 'array' ? ' in length' : '';
      return new ConfigError(
        option,
        `invalid ${at} ${value}: use a value ${bound} ${limit}${what}`,
      );
    }
    case 'invalid_value':
      return new ConfigError(
        option,
        `invalid ${at} ${value}: use one of ${issue.values.map((v) => String(v)).join(', ')}`,
      );
    case 'invalid_type':
      return new ConfigError(option, `invalid ${at} ${value}: expected ${issue.expected}`);
    default:
      return new ConfigError(option, `invalid ${at} ${value}: ${issue.message}`);
  }
}

function formatPath(segments: readonly PropertyKey[]): string {
  let text = '';
  for (const segment of segments) {
    if (typeof segment === 'number') text += `[${segment}]`;
    else text += text === '' ? String(segment) : `.${String(segment)}`;
  }
  return text;
}

function formatValue(value: unknown): string {
  if (value instanceof Uint8Array) return `(${value.byteLength} bytes)`;
  if (typeof value === 'string') {
    return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  }
  if (value === undefined) return '(missing)';
  if (typeof value === 'object') return Array.isArray(value) ? '(array)' : '(object)';
  return String(value);
}

function describe(error: unknown): string {
  const code = (error as { code?: string }).code;
  if (code === 'ENOENT') return 'file not found, check the path';
  if (code === 'EACCES') return 'permission denied, check the file mode';
  if (code === 'EISDIR') return 'it is a directory, give a file';
  return error instanceof Error ? error.message : String(error);
}
