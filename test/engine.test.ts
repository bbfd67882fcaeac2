import { randomBytes } from 'node:crypto';
import { X509Certificate } from 'node:crypto';

import { afterEach, describe, expect, test } from 'vitest';

import { EOF_ABRUPT, EOF_GRACEFUL, NEED_READ } from '../src/shared/codes.js';
import {
  createSecureContext,
  type SecureContext,
  type SecureContextOptions,
} from '../src/tls/context.js';
import { native } from '../src/tls/native.js';
import {
  createEngine,
  liveEngines,
  type OpenSslEngine,
  TlsEngineError,
  type EngineOptions,
} from '../src/tls/openssl-engine.js';
import { testCerts } from './fixtures/certs.js';
import { drain, flush, handshakePair, pump, send } from './fixtures/engine-pair.js';

const certs = testCerts();
const created: Array<OpenSslEngine | SecureContext> = [];

function context(options: SecureContextOptions): SecureContext {
  const ctx = createSecureContext(options);
  created.push(ctx);
  return ctx;
}

function engine(ctx: SecureContext, options: EngineOptions = {}): OpenSslEngine {
  const e = createEngine(ctx, options);
  created.push(e);
  return e;
}

function serverContext(extra: SecureContextOptions = {}): SecureContext {
  return context({ cert: certs.server.cert, key: certs.server.key, ...extra });
}

function clientContext(extra: SecureContextOptions = {}): SecureContext {
  return context({ ca: certs.ca.cert, servername: 'localhost', ...extra });
}

/** Makes a connected client/server pair. */
function connect(
  client: SecureContextOptions = {},
  server: SecureContextOptions = {},
  clientEngine: EngineOptions = {},
): { c: OpenSslEngine; s: OpenSslEngine } {
  const c = engine(clientContext(client), clientEngine);
  const s = engine(serverContext(server), { isServer: true });
  handshakePair(c, s);
  return { c, s };
}

/** Returns the error that `fn` throws, failing the test when it throws none. */
function thrown(fn: () => unknown): TlsEngineError {
  try {
    fn();
  } catch (error) {
    return error as TlsEngineError;
  }
  throw new Error('expected a throw');
}

afterEach(() => {
  for (const item of created.splice(0)) item.destroy();
  expect(liveEngines()).toBe(0);
});

describe('handshake', () => {
  test.each([['TLSv1.2' as const], ['TLSv1.3' as const]])('completes on %s', (version) => {
    const { c, s } = connect({ minVersion: version, maxVersion: version });

    expect(c.handshakeDone()).toBe(true);
    expect(s.handshakeDone()).toBe(true);
    const clientInfo = c.info();
    const serverInfo = s.info();
    expect(clientInfo.version).toBe(version);
    expect(serverInfo.version).toBe(version);
    expect(clientInfo.cipher).toMatch(/AES|CHACHA/);
    expect(clientInfo.servername).toBe('localhost');
    expect(serverInfo.servername).toBe('localhost');
    expect(clientInfo.verifyError).toBeNull();
    expect(serverInfo.peerCertificate).toBeNull();

    const peer = clientInfo.peerCertificate;
    const x509 = new X509Certificate(certs.server.cert);
    expect(peer?.fingerprint256).toBe(x509.fingerprint256);
    expect(peer?.subjectAltNames).toEqual(['DNS:localhost', 'IP Address:127.0.0.1']);
    expect(peer?.subject).toBe('CN=localhost');
    expect(peer?.issuer).toBe('CN=shardtls test CA');
    expect(peer?.serialNumber).toBe(x509.serialNumber.toUpperCase());
    expect(peer?.validTo).toBe(x509.validTo);
  });

  test('before completion reports nulls', () => {
    const c = engine(clientContext());
    expect(c.handshake()).toBe(NEED_READ);
    expect(c.outputPending()).toBeGreaterThan(0);
    expect(c.handshakeDone()).toBe(false);
    expect(c.info().version).toBeNull();
    expect(c.info().cipher).toBeNull();
    expect(c.keyUpdate(true)).toBe(0);
  });

  test('checks an IP address servername against IP SANs', () => {
    const { c } = connect({ servername: '127.0.0.1' });
    expect(c.info().servername).toBeNull();
    expect(c.info().verifyError).toBeNull();
  });
});

describe('data', () => {
  test.each([['TLSv1.2' as const], ['TLSv1.3' as const]])('flows both ways on %s', (version) => {
    const { c, s } = connect({ maxVersion: version });
    const ping = Buffer.from('ping from the client');
    const pong = Buffer.from('pong from the server');

    expect(send(c, s, ping).received).toEqual(ping);
    expect(send(s, c, pong).received).toEqual(pong);
  });

  test('1 MiB passes through many partial writes', () => {
    const { c, s } = connect({}, {}, { bioSize: 4096 });
    const data = randomBytes(1024 * 1024);

    const { received, writes } = send(c, s, data);

    expect(received.length).toBe(data.length);
    expect(received.equals(data)).toBe(true);
    // Each write returns at most one record (16 KiB), so 1 MiB takes at least 64 calls.
    expect(writes).toBeGreaterThanOrEqual(64);
  });

  test('releaseBuffers false passes data', () => {
    const { c, s } = connect({}, {}, { releaseBuffers: false });
    const data = randomBytes(100_000);
    expect(send(c, s, data).received.equals(data)).toBe(true);
  });

  test('peekOutput copies without consuming', () => {
    const { c, s } = connect();
    expect(c.write(Buffer.from('hello'), 0, 5)).toBe(5);
    const pending = c.outputPending();
    const first = new Uint8Array(pending);
    const second = new Uint8Array(pending);

    expect(c.peekOutput(first, 0, pending)).toBe(pending);
    expect(c.peekOutput(second, 0, pending)).toBe(pending);
    expect(second).toEqual(first);
    expect(c.outputPending()).toBe(pending);
    expect(() => c.consumeOutput(pending + 1)).toThrow(RangeError);

    expect(s.writeInput(first, 0, pending)).toBe(pending);
    c.consumeOutput(pending);
    expect(c.outputPending()).toBe(0);
    expect(drain(s).data.toString()).toBe('hello');
  });

  test('takeOutput and transferTo move ciphertext', () => {
    const { c, s } = connect();
    c.write(Buffer.from('one'), 0, 3);
    const out = new Uint8Array(1024);
    const n = c.takeOutput(out, 0, out.length);
    expect(n).toBeGreaterThan(0);
    expect(c.outputPending()).toBe(0);
    expect(s.writeInput(out, 0, n)).toBe(n);
    expect(drain(s).data.toString()).toBe('one');

    s.write(Buffer.from('two'), 0, 3);
    expect(s.transferTo(c)).toBeGreaterThan(0);
    expect(drain(c).data.toString()).toBe('two');
  });

  test('rejects ranges outside the array', () => {
    const { c } = connect();
    const buf = new Uint8Array(8);
    expect(() => c.write(buf, 4, 5)).toThrow(RangeError);
    expect(() => c.write(buf, -1, 1)).toThrow(RangeError);
    expect(() => c.read(buf, 9, 0)).toThrow(RangeError);
    expect(() => c.writeInput(buf, 0, 9)).toThrow(RangeError);
    expect(() => c.write([1, 2] as unknown as Uint8Array, 0, 1)).toThrow(TypeError);
    expect(() => c.write(new Uint16Array(4) as unknown as Uint8Array, 0, 1)).toThrow(TypeError);
  });
});

describe('close', () => {
  test.each([['TLSv1.2' as const], ['TLSv1.3' as const]])('close_notify both ways on %s', (v) => {
    const { c, s } = connect({ maxVersion: v });

    expect(c.shutdown()).toBe(0);
    pump(c, s);
    expect(s.read(new Uint8Array(16), 0, 16)).toBe(EOF_GRACEFUL);
    expect(s.shutdown()).toBe(1);
    pump(c, s);
    expect(c.read(new Uint8Array(16), 0, 16)).toBe(EOF_GRACEFUL);
    expect(c.shutdown()).toBe(1);
    expect(c.write(Buffer.from('late'), 0, 4)).toBe(EOF_GRACEFUL);
  });

  test('server closes first', () => {
    const { c, s } = connect();
    expect(s.shutdown()).toBe(0);
    pump(c, s);
    expect(c.read(new Uint8Array(16), 0, 16)).toBe(EOF_GRACEFUL);
    expect(c.shutdown()).toBe(1);
    pump(c, s);
    expect(s.shutdown()).toBe(1);
  });

  test('input EOF without close_notify gives EOF_ABRUPT', () => {
    const { c, s } = connect();
    send(c, s, Buffer.from('some data'));

    s.writeInputEof();

    expect(s.read(new Uint8Array(16), 0, 16)).toBe(EOF_ABRUPT);
    expect(s.closeReason()).toBeNull();
  });

  test('buffered data reads before the EOF', () => {
    const { c, s } = connect();
    c.write(Buffer.from('tail'), 0, 4);
    flush(c, s);
    s.writeInputEof();

    const { data, code } = drain(s);
    expect(data.toString()).toBe('tail');
    expect(code).toBe(EOF_ABRUPT);
  });

  test('input EOF during the handshake gives EOF_ABRUPT', () => {
    const s = engine(serverContext(), { isServer: true });
    s.writeInputEof();
    expect(s.handshake()).toBe(EOF_ABRUPT);
  });
});

describe('failures', () => {
  test('wrong hostname fails with the verify reason', () => {
    const error = thrown(() => connect({ servername: 'wrong.example' }));
    expect(error).toBeInstanceOf(TlsEngineError);
    expect(error.code).toBe('ERR_TLS_CERT');
    expect(error.message).toBe('certificate verify failed: hostname mismatch');
  });

  test('untrusted CA fails with the verify reason', () => {
    const error = thrown(() => connect({ ca: certs.otherCa.cert }));
    expect(error.code).toBe('ERR_TLS_CERT');
    expect(error.message).toMatch(/^certificate verify failed: unable to get local issuer/);
  });

  test('rejectUnauthorized false reports the verify error', () => {
    const { c } = connect({ servername: 'wrong.example', rejectUnauthorized: false });
    expect(c.info().verifyError).toBe('hostname mismatch');
  });

  test.each([
    ['an HTTP request', Buffer.from('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n')],
    ['random bytes', randomBytes(512)],
    ['a record header with a bad version', Buffer.from([22, 9, 9, 0, 5, 1, 2, 3, 4, 5])],
  ])('garbage ClientHello fails cleanly: %s', (_name, garbage) => {
    const s = engine(serverContext(), { isServer: true });
    s.writeInput(garbage, 0, garbage.length);

    const error = thrown(() => s.handshake());
    expect(error).toBeInstanceOf(TlsEngineError);
    expect(error.code).toBe('ERR_TLS_PROTOCOL');
    expect(error.message.length).toBeGreaterThan(0);

    // The failure is sticky and the engine stays usable for destroy().
    expect(thrown(() => s.read(new Uint8Array(4), 0, 4)).message).toBe(error.message);
  });

  test('failure keeps the OpenSSL error queue empty', () => {
    const s = engine(serverContext(), { isServer: true });
    s.writeInput(Buffer.from('not tls at all, not at all'), 0, 26);
    thrown(() => s.handshake());
    // Node's own crypto shares the thread's error queue: it must still work afterwards.
    expect(() => new X509Certificate(certs.ca.cert)).not.toThrow();
  });
});

describe('ALPN', () => {
  test('server picks by its own preference', () => {
    const { c, s } = connect(
      { alpnProtocols: ['http/1.1', 'h2'] },
      { alpnProtocols: ['h2', 'http/1.1'] },
    );
    expect(c.info().alpnProtocol).toBe('h2');
    expect(s.info().alpnProtocol).toBe('h2');
  });

  test('no ALPN on either side gives null', () => {
    const { c } = connect();
    expect(c.info().alpnProtocol).toBeNull();
  });

  test('no overlap fails with no_application_protocol', () => {
    const c = engine(clientContext({ alpnProtocols: ['imap'] }));
    const s = engine(serverContext({ alpnProtocols: ['h2'] }), { isServer: true });

    c.handshake();
    flush(c, s);
    const serverError = thrown(() => s.handshake());
    expect(serverError.code).toBe('ERR_TLS_PROTOCOL');
    expect(serverError.message).toBe('no application protocol');

    flush(s, c);
    const clientError = thrown(() => c.handshake());
    expect(clientError.message).toMatch(/alert no application protocol/);
  });
});

describe('KeyUpdate', () => {
  test.each([[true], [false]])('mid-stream with requestPeer %s', (requestPeer) => {
    const { c, s } = connect({ maxVersion: 'TLSv1.3' });
    send(c, s, Buffer.from('before'));
    // Let the client take the server's session tickets first.
    expect(drain(c).code).toBe(NEED_READ);

    // The size of one record carrying one byte from the server, before any KeyUpdate.
    s.write(Buffer.from('x'), 0, 1);
    const oneByteRecord = s.outputPending();
    pump(c, s);
    drain(c);

    expect(c.keyUpdate(requestPeer)).toBe(1);
    expect(c.outputPending()).toBeGreaterThan(0);
    flush(c, s);
    expect(drain(s).code).toBe(NEED_READ);

    // RFC 8446 section 4.6.3: asked to update, the server sends its own KeyUpdate before its
    // next application data, so the next one-byte write carries one record more.
    s.write(Buffer.from('y'), 0, 1);
    if (requestPeer) expect(s.outputPending()).toBeGreaterThan(oneByteRecord);
    else expect(s.outputPending()).toBe(oneByteRecord);
    pump(c, s);
    expect(drain(c).data.toString()).toBe('y');

    expect(send(c, s, Buffer.from('after, client')).received.toString()).toBe('after, client');
    expect(send(s, c, Buffer.from('after, server')).received.toString()).toBe('after, server');
  });

  test('returns 0 on TLS 1.2', () => {
    const { c } = connect({ maxVersion: 'TLSv1.2' });
    expect(c.keyUpdate(true)).toBe(0);
  });
});

describe('client certificates', () => {
  const ca = certs.ca.cert;

  test('missing required certificate fails (TLS 1.3)', () => {
    const c = engine(clientContext());
    const s = engine(serverContext({ requireCert: true, ca }), { isServer: true });

    const error = thrown(() => handshakePair(c, s));
    expect(error.code).toBe('ERR_TLS_CERT');
    expect(error.message).toBe('peer did not return a certificate');

    // In TLS 1.3 the client finishes first and learns of the alert when it reads.
    pump(c, s);
    expect(c.read(new Uint8Array(16), 0, 16)).toBe(EOF_ABRUPT);
    expect(c.closeReason()).toMatch(/alert certificate required/);
  });

  test('missing required certificate fails (TLS 1.2)', () => {
    const c = engine(clientContext({ maxVersion: 'TLSv1.2' }));
    const s = engine(serverContext({ requireCert: true, ca }), { isServer: true });

    expect(thrown(() => handshakePair(c, s)).message).toBe('peer did not return a certificate');
    pump(c, s);
    const error = thrown(() => c.handshake());
    // TLS 1.2 has no certificate_required alert: the server sends handshake_failure.
    expect(error.code).toBe('ERR_TLS_PROTOCOL');
    // OpenSSL 3.0 (inside Node 20) says 'sslv3 alert'; 3.5 (Node 22.20+, 24) says 'ssl/tls alert'.
    expect(error.message).toMatch(/^ssl(v3|\/tls) alert handshake failure$/);
  });

  test('required certificate present passes', () => {
    const { s } = connect(
      { cert: certs.client.cert, key: certs.client.key },
      { requireCert: true, ca },
    );
    expect(s.info().peerCertificate?.subject).toBe('CN=shardtls test client');
    expect(s.info().verifyError).toBeNull();
  });

  test('requested but absent certificate passes', () => {
    const { s } = connect({}, { requestCert: true, ca });
    expect(s.info().peerCertificate).toBeNull();
  });
});

describe('SNI', () => {
  const sniContexts = [{ cert: certs.sni.cert, key: certs.sni.key }];

  test.each([
    ['sni.test', 'CN=sni.test'],
    ['a.wild.test', 'CN=sni.test'],
    ['A.Wild.Test', 'CN=sni.test'],
    ['b.a.wild.test', 'CN=localhost'],
    ['localhost', 'CN=localhost'],
  ])('%s gets %s', (servername, subject) => {
    const { c, s } = connect({ servername, rejectUnauthorized: false }, { sniContexts });
    expect(c.info().peerCertificate?.subject).toBe(subject);
    expect(s.info().servername).toBe(servername);
  });

  test('explicit names replace the SANs', () => {
    const { c } = connect(
      { servername: 'other.test', rejectUnauthorized: false },
      { sniContexts: [{ ...sniContexts[0], names: ['other.test'] }] },
    );
    expect(c.info().peerCertificate?.subject).toBe('CN=sni.test');
  });

  test('SNI certificate verifies with ALPN and a client certificate', () => {
    const { c, s } = connect(
      {
        servername: 'x.wild.test',
        alpnProtocols: ['h2'],
        cert: certs.client.cert,
        key: certs.client.key,
      },
      { sniContexts, alpnProtocols: ['h2'], requireCert: true, ca: certs.ca.cert },
    );
    expect(c.info().verifyError).toBeNull();
    expect(c.info().alpnProtocol).toBe('h2');
    expect(s.info().peerCertificate?.subject).toBe('CN=shardtls test client');
  });
});

describe('resumption', () => {
  test.each([['TLSv1.2' as const], ['TLSv1.3' as const]])('reports sessionReused on %s', (v) => {
    const clientCtx = clientContext({ maxVersion: v });
    const serverCtx = serverContext();

    const c1 = engine(clientCtx);
    const s1 = engine(serverCtx, { isServer: true });
    handshakePair(c1, s1);
    drain(c1);
    const session = c1.session();
    expect(session).not.toBeNull();
    expect(c1.info().sessionReused).toBe(false);

    const c2 = engine(clientCtx, { session: session ?? undefined });
    const s2 = engine(serverCtx, { isServer: true });
    handshakePair(c2, s2);
    expect(c2.info().sessionReused).toBe(true);
    expect(s2.info().sessionReused).toBe(true);
    expect(send(c2, s2, Buffer.from('resumed')).received.toString()).toBe('resumed');
  });

  test('tickets off: no session to resume', () => {
    const clientCtx = clientContext();
    const serverCtx = serverContext({ sessionTickets: false });
    const c1 = engine(clientCtx);
    const s1 = engine(serverCtx, { isServer: true });
    handshakePair(c1, s1);
    drain(c1);
    expect(c1.session()).toBeNull();
  });
});

describe('handles', () => {
  test('destroyed engine throws TypeError', () => {
    const c = createEngine(clientContext());
    c.destroy();
    c.destroy();
    expect(() => c.handshake()).toThrow(TypeError);
    expect(() => c.write(new Uint8Array(1), 0, 1)).toThrow(/destroyed/);
    expect(() => c.outputPending()).toThrow(TypeError);
    expect(() => c.info()).toThrow(TypeError);
  });

  test('foreign handles throw TypeError', () => {
    const ctx = clientContext();
    const contextHandle = ctx.nativeHandle();
    expect(() => native.handshake(contextHandle)).toThrow(TypeError);
    const plain = {} as unknown as Parameters<typeof native.handshake>[0];
    expect(() => native.handshake(plain)).toThrow(TypeError);
    expect(() => native.destroy(plain)).toThrow(TypeError);
    const e = engine(ctx);
    expect(() => native.contextDestroy(plain)).toThrow(TypeError);
    expect(() => native.engineCreate(plain, false, null, 0, null, 0)).toThrow(TypeError);
    expect(e.handshake()).toBe(NEED_READ);
  });

  test('engine keeps a destroyed context alive', () => {
    const ctx = createSecureContext({ cert: certs.server.cert, key: certs.server.key });
    const s = engine(ctx, { isServer: true });
    ctx.destroy();
    ctx.destroy();
    expect(() => createEngine(ctx)).toThrow(TypeError);

    const c = engine(clientContext());
    handshakePair(c, s);
    expect(send(c, s, Buffer.from('still here')).received.toString()).toBe('still here');
  });
});
