/**
 * Secure contexts: an OpenSSL SSL_CTX built from plain-data options.
 *
 * The options are plain data (strings, byte arrays, booleans), so they survive postMessage and
 * every shard builds its own context from the same object. A context serves both sides: server
 * engines use the certificate, `requestCert`, `requireCert` and `sniContexts`; client engines use
 * `ca`, `servername` and `rejectUnauthorized`, and send the certificate when a server requests one.
 */
import { readFileSync } from 'node:fs';

import { native, type NativeHandle } from './native.js';

/** A protocol version name as Node's `tls` module spells it. */
export type TlsVersion = 'TLSv1.2' | 'TLSv1.3';

/** PEM text, as a string or as its bytes. */
export type Pem = string | Uint8Array;

/** A certificate and key that a server chooses by the client's SNI name (RFC 6066 section 3). */
export interface SniCertificate {
  /**
   * Names served with this pair, exact (`api.example.com`) or wildcard over one label
   * (`*.example.com`), case-insensitive. Defaults to the certificate's DNS subject alternative
   * names.
   */
  names?: string[];
  cert: Pem;
  key: Pem;
  passphrase?: string;
}

/** Options of `createSecureContext`. Every field is plain data. */
export interface SecureContextOptions {
  /** PEM certificate chain, leaf first. Either `cert` or `certFile`, not both. */
  cert?: Pem;
  /** PEM private key, optionally encrypted with `passphrase`. */
  key?: Pem;
  /** Path of a PEM certificate chain, read synchronously when the context is created. */
  certFile?: string;
  /** Path of a PEM private key, read synchronously when the context is created. */
  keyFile?: string;
  passphrase?: string;
  /**
   * PEM bundle (or several) trusted to verify the peer. Without it, OpenSSL's default locations
   * of the OpenSSL build inside node are used. A server also names these CAs in its certificate
   * request.
   */
  ca?: Pem | Pem[];
  /** Client: default server name for SNI and the hostname check, overridable per engine. */
  servername?: string;
  /** Client: fail the handshake when the server's chain or name does not verify. Default true. */
  rejectUnauthorized?: boolean;
  /** Server: ask the client for a certificate and verify it when sent. Default false. */
  requestCert?: boolean;
  /** Server: fail the handshake when the client sends no certificate. Implies requestCert. */
  requireCert?: boolean;
  /**
   * ALPN protocols in preference order. A server selects by its own order; without overlap the
   * handshake fails with the no_application_protocol alert (RFC 7301 section 3.2).
   */
  alpnProtocols?: string[];
  /** Lowest protocol version. Default 'TLSv1.2'. */
  minVersion?: TlsVersion;
  /** Highest protocol version. Default 'TLSv1.3'. */
  maxVersion?: TlsVersion;
  /** TLS 1.2 cipher list in OpenSSL syntax. */
  ciphers?: string;
  /** TLS 1.3 cipher suites, colon-separated. */
  ciphersuites?: string;
  /** Issue and accept session tickets for resumption. Default true. */
  sessionTickets?: boolean;
  /** Server: extra certificates chosen by SNI; the default pair serves every other name. */
  sniContexts?: SniCertificate[];
  /**
   * Server: the secret that seals session tickets, `TICKET_KEYS_BYTES` random bytes. Contexts
   * built with the same keys resume each other's tickets (every shard of a server). Without it,
   * OpenSSL picks random keys per context. Never log or persist it in clear.
   */
  ticketKeys?: Uint8Array;
}

/** Bytes of `ticketKeys` that OpenSSL 3 takes: a key name, an HMAC key and an AES key. */
export const TICKET_KEYS_BYTES = 80;

const VERSIONS: Readonly<Record<TlsVersion, number>> = { 'TLSv1.2': 0x0303, 'TLSv1.3': 0x0304 };

function invalid(message: string): TypeError {
  const error = new TypeError(message);
  (error as TypeError & { code: string }).code = 'ERR_INVALID_ARG_VALUE';
  return error;
}

function pemBytes(name: string, value: unknown): Uint8Array {
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  if (value instanceof Uint8Array) return value;
  throw invalid(`invalid ${name}: expected PEM as a string or Uint8Array`);
}

function versionNumber(name: string, value: unknown, fallback: TlsVersion): number {
  if (value === undefined) return VERSIONS[fallback];
  if (value === 'TLSv1.2' || value === 'TLSv1.3') return VERSIONS[value];
  throw invalid(`invalid ${name} '${String(value)}': use TLSv1.2 or TLSv1.3`);
}

function optionalString(name: string, value: unknown): string | null {
  if (value === undefined) return null;
  if (typeof value !== 'string' || value.length === 0) {
    throw invalid(`invalid ${name}: expected a non-empty string`);
  }
  return value;
}

function optionalBoolean(name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw invalid(`invalid ${name}: expected a boolean`);
  return value;
}

/** Encodes ALPN protocol names in the wire format of RFC 7301 section 3.1. */
function alpnWire(value: unknown): Uint8Array {
  if (!Array.isArray(value) || value.length === 0) {
    throw invalid('invalid alpnProtocols: expected a non-empty array of strings');
  }
  const parts = value.map((name: unknown) => {
    const bytes = typeof name === 'string' ? Buffer.from(name, 'utf8') : null;
    if (bytes === null || bytes.length === 0 || bytes.length > 255) {
      throw invalid(`invalid alpnProtocols entry '${String(name)}': use 1 to 255 bytes`);
    }
    return Buffer.concat([Buffer.from([bytes.length]), bytes]);
  });
  return Buffer.concat(parts);
}

/** Reads `cert`/`certFile` (or `key`/`keyFile`): exactly one of the pair may be set. */
function pemOrFile(options: SecureContextOptions, name: 'cert' | 'key'): Uint8Array | null {
  const inline = options[name];
  const file = options[`${name}File`];
  if (inline !== undefined && file !== undefined) {
    throw invalid(`invalid ${name}: set ${name} or ${name}File, not both`);
  }
  if (file !== undefined) {
    if (typeof file !== 'string') throw invalid(`invalid ${name}File: expected a path`);
    try {
      return readFileSync(file);
    } catch (error) {
      throw invalid(`cannot read ${name}File '${file}': ${(error as Error).message}`);
    }
  }
  return inline === undefined ? null : pemBytes(name, inline);
}

/** An SSL_CTX and the client defaults that engines made from it use. */
export class SecureContext {
  /** Client default for SNI and the hostname check, or null. */
  readonly servername: string | null;
  #handle: NativeHandle | null;

  /** Use `createSecureContext`. */
  constructor(handle: NativeHandle, servername: string | null) {
    this.#handle = handle;
    this.servername = servername;
  }

  /** True after `destroy()`. */
  get destroyed(): boolean {
    return this.#handle === null;
  }

  /**
   * Returns the native handle for making an engine. Throws a TypeError after `destroy()`.
   * @internal
   */
  nativeHandle(): NativeHandle {
    if (this.#handle === null) throw new TypeError('the secure context was destroyed');
    return this.#handle;
  }

  /**
   * Drops this object's reference to the native context. Engines made from it keep it alive
   * until they are destroyed; new engines can no longer be made. Safe to call twice.
   */
  destroy(): void {
    if (this.#handle === null) return;
    native.contextDestroy(this.#handle);
    this.#handle = null;
  }
}

/**
 * Builds a secure context from plain-data options.
 *
 * Returns the context. Throws a TypeError with `code` 'ERR_INVALID_ARG_VALUE' (from this module)
 * or an Error with the same code (from OpenSSL) whose message names the option at fault, for
 * example "invalid minVersion 'TLSv1.1': use TLSv1.2 or TLSv1.3", "key does not match cert",
 * "cannot parse cert: PEM routines: no start line", "wrong passphrase for key". A context that
 * fails to build is freed before the throw.
 */
export function createSecureContext(options: SecureContextOptions = {}): SecureContext {
  if (options === null || typeof options !== 'object')
    throw invalid('invalid options: expected an object');

  // 1. Plain checks first, so no native memory is held when they fail.
  const min = versionNumber('minVersion', options.minVersion, 'TLSv1.2');
  const max = versionNumber('maxVersion', options.maxVersion, 'TLSv1.3');
  if (min > max) {
    throw invalid(`invalid maxVersion '${options.maxVersion}': it is below minVersion`);
  }
  const cert = pemOrFile(options, 'cert');
  const key = pemOrFile(options, 'key');
  if ((cert === null) !== (key === null)) {
    throw invalid(
      cert === null ? 'missing cert: key is set without it' : 'missing key: cert is set without it',
    );
  }
  const passphrase = optionalString('passphrase', options.passphrase);
  const servername = optionalString('servername', options.servername);
  const ciphers = optionalString('ciphers', options.ciphers);
  const ciphersuites = optionalString('ciphersuites', options.ciphersuites);
  const rejectUnauthorized = optionalBoolean(
    'rejectUnauthorized',
    options.rejectUnauthorized,
    true,
  );
  const requireCert = optionalBoolean('requireCert', options.requireCert, false);
  const requestCert = optionalBoolean('requestCert', options.requestCert, false) || requireCert;
  const sessionTickets = optionalBoolean('sessionTickets', options.sessionTickets, true);
  const alpn = options.alpnProtocols === undefined ? null : alpnWire(options.alpnProtocols);
  const cas = options.ca === undefined ? [] : Array.isArray(options.ca) ? options.ca : [options.ca];
  const sni = options.sniContexts ?? [];
  if (!Array.isArray(sni)) throw invalid('invalid sniContexts: expected an array');

  // 2. The native context, freed again if any step below throws.
  const handle = native.contextCreate();
  try {
    native.contextSetVersions(handle, min, max);
    if (ciphers !== null || ciphersuites !== null) {
      native.contextSetCiphers(handle, ciphers, ciphersuites);
    }
    if (cas.length === 0) native.contextUseDefaultCa(handle);
    for (const ca of cas) native.contextAddCa(handle, pemBytes('ca', ca));
    if (cert !== null && key !== null) native.contextUseCertKey(handle, cert, key, passphrase);
    if (alpn !== null) native.contextSetAlpn(handle, alpn);

    for (const [i, entry] of sni.entries()) {
      const names = entry.names ?? [];
      if (!Array.isArray(names) || names.some((n) => typeof n !== 'string' || n.length === 0)) {
        throw invalid(`invalid sniContexts[${i}].names: expected non-empty strings`);
      }
      const pass = optionalString(`sniContexts[${i}].passphrase`, entry.passphrase);
      native.contextAddSni(
        handle,
        names,
        pemBytes(`sniContexts[${i}].cert`, entry.cert),
        pemBytes(`sniContexts[${i}].key`, entry.key),
        pass,
      );
    }

    // 3. Ticket keys and flags last: they apply to the SNI contexts made above as well.
    if (options.ticketKeys !== undefined) {
      if (!(options.ticketKeys instanceof Uint8Array)) {
        throw invalid('invalid ticketKeys: expected a Uint8Array');
      }
      native.contextSetTicketKeys(handle, options.ticketKeys);
    }
    native.contextSetFlags(handle, sessionTickets, requestCert, requireCert, rejectUnauthorized);
  } catch (error) {
    native.contextDestroy(handle);
    throw error;
  }
  return new SecureContext(handle, servername);
}
