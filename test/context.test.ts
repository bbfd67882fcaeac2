import { afterEach, describe, expect, test } from 'vitest';

import { createSecureContext, type SecureContextOptions } from '../src/tls/context.js';
import { createEngine, liveContexts, liveEngines } from '../src/tls/openssl-engine.js';
import { testCerts } from './fixtures/certs.js';
import { handshakePair } from './fixtures/engine-pair.js';

const certs = testCerts();

/** Returns the message of the error that building a context with `options` throws. */
function failure(options: SecureContextOptions): string {
  try {
    createSecureContext(options).destroy();
  } catch (error) {
    return (error as Error).message;
  }
  throw new Error('expected createSecureContext to throw');
}

afterEach(() => {
  expect(liveContexts()).toBe(0);
  expect(liveEngines()).toBe(0);
});

describe('createSecureContext', () => {
  test.each<[string, SecureContextOptions, string | RegExp]>([
    [
      'minVersion TLSv1.1',
      { minVersion: 'TLSv1.1' as 'TLSv1.2' },
      "invalid minVersion 'TLSv1.1': use TLSv1.2 or TLSv1.3",
    ],
    [
      'maxVersion below minVersion',
      { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.2' },
      "invalid maxVersion 'TLSv1.2': it is below minVersion",
    ],
    ['key without cert', { key: certs.server.key }, 'missing cert: key is set without it'],
    ['cert without key', { cert: certs.server.cert }, 'missing key: cert is set without it'],
    [
      'mismatched key',
      { cert: certs.server.cert, key: certs.client.key },
      'key does not match cert',
    ],
    ['cert that is not PEM', { cert: 'hello', key: certs.server.key }, /^cannot parse cert: PEM/],
    ['key that is not PEM', { cert: certs.server.cert, key: 'hello' }, /^cannot parse key: /],
    [
      'wrong passphrase',
      { cert: certs.server.cert, key: certs.serverEncryptedKey, passphrase: 'wrong' },
      'wrong passphrase for key',
    ],
    [
      'missing passphrase',
      { cert: certs.server.cert, key: certs.serverEncryptedKey },
      'key is encrypted: set passphrase',
    ],
    ['ca that is not PEM', { ca: 'nothing here' }, /^cannot parse ca: PEM/],
    ['unknown TLS 1.2 cipher', { ciphers: 'NOPE' }, "invalid ciphers 'NOPE': no cipher matches"],
    [
      'unknown TLS 1.3 suite',
      { ciphersuites: 'TLS_NOPE' },
      "invalid ciphersuites 'TLS_NOPE': no TLS 1.3 suite matches",
    ],
    ['empty ALPN list', { alpnProtocols: [] }, /^invalid alpnProtocols/],
    ['ALPN name too long', { alpnProtocols: ['x'.repeat(256)] }, /^invalid alpnProtocols entry/],
    ['rejectUnauthorized string', { rejectUnauthorized: 'no' as unknown as boolean }, /boolean/],
    ['cert and certFile', { cert: certs.server.cert, certFile: '/x' }, /set cert or certFile/],
    ['missing certFile', { certFile: '/nonexistent/cert.pem', key: 'k' }, /^cannot read certFile/],
    [
      'SNI key mismatch',
      {
        cert: certs.server.cert,
        key: certs.server.key,
        sniContexts: [{ cert: certs.sni.cert, key: certs.server.key }],
      },
      'sniContexts: key does not match cert',
    ],
    [
      'ticket keys of the wrong size',
      { cert: certs.server.cert, key: certs.server.key, ticketKeys: new Uint8Array(48) },
      'invalid ticketKeys: expected 80 bytes, got 48',
    ],
  ])('rejects %s', (_name, options, expected) => {
    const message = failure(options);
    if (typeof expected === 'string') expect(message).toBe(expected);
    else expect(message).toMatch(expected);
  });

  test('accepts an encrypted key with its passphrase', () => {
    const ctx = createSecureContext({
      cert: certs.server.cert,
      key: certs.serverEncryptedKey,
      passphrase: certs.passphrase,
    });
    const client = createSecureContext({ ca: certs.ca.cert, servername: 'localhost' });
    const s = createEngine(ctx, { isServer: true });
    const c = createEngine(client);

    handshakePair(c, s);
    expect(c.info().peerCertificate?.subject).toBe('CN=localhost');

    c.destroy();
    s.destroy();
    ctx.destroy();
    client.destroy();
  });

  test('accepts PEM as bytes', () => {
    const ctx = createSecureContext({
      cert: Buffer.from(certs.server.cert),
      key: Buffer.from(certs.server.key),
      ca: [Buffer.from(certs.ca.cert), certs.otherCa.cert],
    });
    expect(ctx.destroyed).toBe(false);
    ctx.destroy();
    expect(ctx.destroyed).toBe(true);
  });

  test('options survive structured clone', () => {
    const options: SecureContextOptions = {
      cert: certs.server.cert,
      key: certs.server.key,
      alpnProtocols: ['h2'],
      sniContexts: [{ cert: certs.sni.cert, key: certs.sni.key, names: ['sni.test'] }],
    };
    const ctx = createSecureContext(structuredClone(options));
    ctx.destroy();
  });

  test('rejects a bioSize out of range', () => {
    const ctx = createSecureContext({});
    expect(() => createEngine(ctx, { bioSize: 100 })).toThrow(RangeError);
    expect(() => createEngine(ctx, { bioSize: 64 * 1024 * 1024 })).toThrow(RangeError);
    ctx.destroy();
  });
});
