/**
 * The shardtls_tls addon: typed bindings to the C engine and secure contexts.
 *
 * The addon is loaded with createRequire from `../../build/Release/shardtls_tls.node`, a path
 * that is the same from src/tls and dist/tls. It is context aware, so every worker thread that
 * imports this module gets its own addon state (error class, live counters).
 *
 * Handles are opaque, type-tagged native externals. Passing a handle of the wrong kind, or an
 * engine handle after `destroy`, throws a TypeError.
 */
import { createRequire } from 'node:module';

/** An opaque native handle: an engine or a secure context. */
export type NativeHandle = { readonly __native: unique symbol };

/** The session details that `info` returns, plus the peer's verify error. */
export interface NativeInfo {
  version: string | null;
  cipher: string | null;
  alpnProtocol: string | null;
  servername: string | null;
  peerCertificate: {
    subject: string;
    issuer: string;
    subjectAltNames: string[];
    validFrom: string;
    validTo: string;
    serialNumber: string;
    fingerprint256: string;
  } | null;
  sessionReused: boolean;
  verifyError: string | null;
}

/** The functions that the addon exports. */
export interface NativeBinding {
  setErrorClass(ctor: new (message: string, code: string) => Error): void;
  liveEngines(): number;
  liveContexts(): number;
  opensslVersion(): string;
  setResultArray(results: Int32Array): void;
  releaseIdleBuffers(): number;

  contextCreate(): NativeHandle;
  contextDestroy(context: NativeHandle): void;
  contextSetVersions(context: NativeHandle, min: number, max: number): void;
  contextUseCertKey(
    context: NativeHandle,
    cert: Uint8Array,
    key: Uint8Array,
    passphrase: string | null,
  ): void;
  contextAddSni(
    context: NativeHandle,
    names: string[],
    cert: Uint8Array,
    key: Uint8Array,
    passphrase: string | null,
  ): void;
  contextAddCa(context: NativeHandle, pem: Uint8Array): void;
  contextUseDefaultCa(context: NativeHandle): void;
  contextSetCiphers(context: NativeHandle, ciphers: string | null, suites: string | null): void;
  contextSetAlpn(context: NativeHandle, wire: Uint8Array): void;
  contextSetTicketKeys(context: NativeHandle, keys: Uint8Array): void;
  contextSetFlags(
    context: NativeHandle,
    sessionTickets: boolean,
    requestCert: boolean,
    requireCert: boolean,
    rejectUnauthorized: boolean,
  ): void;

  engineCreate(
    context: NativeHandle,
    isServer: boolean,
    servername: string | null,
    bioSize: number,
    session: Uint8Array | null,
    bufferPolicy: number,
  ): NativeHandle;
  handshake(engine: NativeHandle): number;
  handshakeDone(engine: NativeHandle): boolean;
  write(engine: NativeHandle, src: Uint8Array, offset: number, length: number): number;
  read(engine: NativeHandle, dst: Uint8Array, offset: number, length: number): number;
  writeOut(
    engine: NativeHandle,
    src: Uint8Array,
    offset: number,
    length: number,
    dst: Uint8Array,
    dstOffset: number,
    dstLength: number,
    take: boolean,
  ): number;
  pushRead(
    engine: NativeHandle,
    src: Uint8Array,
    offset: number,
    length: number,
    dst: Uint8Array,
    dstOffset: number,
    dstLength: number,
  ): number;
  shutdown(engine: NativeHandle): number;
  outputPending(engine: NativeHandle): number;
  peekOutput(engine: NativeHandle, dst: Uint8Array, offset: number, length: number): number;
  consumeOutput(engine: NativeHandle, n: number): number;
  takeOutput(engine: NativeHandle, dst: Uint8Array, offset: number, length: number): number;
  inputSpace(engine: NativeHandle): number;
  writeInput(engine: NativeHandle, src: Uint8Array, offset: number, length: number): number;
  writeInputEof(engine: NativeHandle): void;
  transfer(from: NativeHandle, to: NativeHandle): number;
  keyUpdate(engine: NativeHandle, requestPeer: boolean): number;
  session(engine: NativeHandle): Uint8Array | null;
  closeReason(engine: NativeHandle): string | null;
  info(engine: NativeHandle): NativeInfo;
  destroy(engine: NativeHandle): void;
}

const require = createRequire(import.meta.url);

/** The loaded addon. Importing this module throws when the addon was not built. */
export const native = require('../../build/Release/shardtls_tls.node') as NativeBinding;
