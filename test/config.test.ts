import { createPrivateKey } from 'node:crypto';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { generateSelfSigned, type GeneratedCertificate } from '../src/main/certs.js';
import {
  ConfigError,
  parseHostPort,
  resolveServerOptions,
  type ServerOptionsInput,
} from '../src/shared/config.js';

let dir: string;
let first: GeneratedCertificate;
let second: GeneratedCertificate;
let encryptedKey: string;

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'shardtls-config-'));
  first = await generateSelfSigned();
  second = await generateSelfSigned();
  encryptedKey = createPrivateKey(first.key)
    .export({ format: 'pem', type: 'pkcs8', cipher: 'aes-256-cbc', passphrase: 'right' })
    .toString();

  writeFileSync(path.join(dir, 'cert.pem'), first.cert);
  writeFileSync(path.join(dir, 'key.pem'), first.key);
  writeFileSync(path.join(dir, 'garbage.pem'), 'not a certificate\n');
  writeFileSync(path.join(dir, 'handler.mjs'), 'export default {};\n');
  mkdirSync(path.join(dir, 'a-directory'));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** Resolves `input` and returns the ConfigError it throws; fails the test if it does not throw. */
function configError(input: unknown): ConfigError {
  try {
    resolveServerOptions(input as ServerOptionsInput, { cwd: dir });
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error(`expected a ConfigError for ${JSON.stringify(input)}`);
}

describe('resolveServerOptions', () => {
  it('applies the defaults', () => {
    const options = resolveServerOptions({});

    expect(options.host).toBe('127.0.0.1');
    expect(options.port).toBe(8443);
    expect(options.backlog).toBe(511);
    expect(options.shards).toBeGreaterThanOrEqual(1);
    expect(options.transport).toBe('direct');
    expect(options.balance).toBe('round-robin');
    expect(options.handler).toBe('echo');
    expect(options.tls.certs).toEqual([]);
    expect(options.tls.minVersion).toBe('TLSv1.2');
    expect(options.tls.sessionTickets).toBe(true);
    expect(options.tls.requestCert).toBe(false);
    expect(options.maxConnections).toBe(10_000);
    expect(options.handshakeTimeoutMs).toBe(10_000);
    expect(options.drainTimeoutMs).toBe(30_000);
    expect(options.logLevel).toBe('info');
    expect(options.ringBytes).toBe(4 * 1024 * 1024);
    expect(options.creditBytes).toBe(256 * 1024);
    expect(options.statsPort).toBeUndefined();
  });

  it('returns plain data that survives structuredClone', () => {
    const options = resolveServerOptions(
      {
        tls: { certs: [{ cert: Buffer.from(first.cert), key: 'key.pem' }], ca: 'cert.pem' },
        handler: 'proxy',
        backend: '[::1]:9000',
      },
      { cwd: dir },
    );

    expect(structuredClone(options)).toEqual(options);
    expect(options.tls.certs[0].cert).toBe(first.cert);
    expect(options.tls.certs[0].key).toBe(first.key);
    expect(options.tls.ca).toEqual([first.cert]);
    expect(options.backend).toEqual({ host: '::1', port: 9000 });
  });

  it('takes SNI names from the SANs', () => {
    const options = resolveServerOptions(
      { tls: { certs: [{ cert: first.cert, key: first.key }] } },
      { cwd: dir },
    );

    expect(options.tls.certs[0].names).toEqual(['localhost']);
  });

  it('keeps given SNI names in lower case', () => {
    const options = resolveServerOptions({
      tls: { certs: [{ cert: first.cert, key: first.key, names: ['Example.COM'] }] },
    });

    expect(options.tls.certs[0].names).toEqual(['example.com']);
  });

  it('makes requireCert imply requestCert', () => {
    const options = resolveServerOptions({ tls: { requireCert: true } });

    expect(options.tls.requestCert).toBe(true);
  });

  it('resolves a relative handler to a file URL', () => {
    const options = resolveServerOptions({ handler: './handler.mjs' }, { cwd: dir });

    expect(options.handler).toBe(pathToFileURL(path.join(dir, 'handler.mjs')).href);
  });

  it('loads an encrypted key with its passphrase', () => {
    const options = resolveServerOptions({
      tls: { certs: [{ cert: first.cert, key: encryptedKey, passphrase: 'right' }] },
    });

    expect(options.tls.certs[0].passphrase).toBe('right');
  });

  it.each([
    { name: 'port above range', input: { port: 70000 }, option: 'port', text: '70000' },
    { name: 'negative port', input: { port: -1 }, option: 'port', text: 'at least 0' },
    { name: 'port as text', input: { port: '80' }, option: 'port', text: 'expected number' },
    { name: 'zero shards', input: { shards: 0 }, option: 'shards', text: 'at least 1' },
    { name: 'unknown transport', input: { transport: 'fast' }, option: 'transport', text: 'relay' },
    { name: 'unknown key', input: { prot: 1 }, option: '', text: 'unknown option prot' },
    {
      name: 'unknown tls key',
      input: { tls: { cert: 'x' } },
      option: 'tls',
      text: 'unknown option tls.cert',
    },
    {
      name: 'unknown TLS version',
      input: { tls: { minVersion: 'TLSv1.1' } },
      option: 'tls.minVersion',
      text: 'TLSv1.2',
    },
    {
      name: 'max below min version',
      input: { tls: { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.2' } },
      option: 'tls.maxVersion',
      text: 'below tls.minVersion',
    },
    {
      name: 'invalid cipher list',
      input: { tls: { ciphers: 'NO-SUCH-CIPHER' } },
      option: 'tls.ciphers',
      text: 'NO-SUCH-CIPHER',
    },
    {
      name: 'proxy without backend',
      input: { handler: 'proxy' },
      option: 'backend',
      text: 'proxy',
    },
    {
      name: 'backend without port',
      input: { handler: 'proxy', backend: 'localhost' },
      option: 'backend',
      text: "'localhost'",
    },
    {
      name: 'missing handler module',
      input: { handler: './nothing.mjs' },
      option: 'handler',
      text: 'nothing.mjs',
    },
    {
      name: 'handler is a directory',
      input: { handler: 'a-directory' },
      option: 'handler',
      text: 'not a file',
    },
    {
      name: 'ring not a power of two',
      input: { ringBytes: 100_000 },
      option: 'ringBytes',
      text: 'power of two',
    },
    {
      name: 'credit above ring',
      input: { ringBytes: 65536, creditBytes: 131072 },
      option: 'creditBytes',
      text: 'at most ringBytes',
    },
    { name: 'unknown log level', input: { logLevel: 'loud' }, option: 'logLevel', text: 'silent' },
  ])('rejects $name', ({ input, option, text }) => {
    const error = configError(input);

    expect(error.code).toBe('ERR_CONFIG');
    expect(error.option).toBe(option);
    expect(error.message).toContain(text);
    expect(error.message).not.toContain('\n');
  });

  it('names option and path of a missing file', () => {
    const error = configError({ tls: { certs: [{ cert: 'missing.pem', key: 'key.pem' }] } });

    expect(error.option).toBe('tls.certs[0].cert');
    expect(error.message).toContain(path.join(dir, 'missing.pem'));
    expect(error.message).toContain('not found');
  });

  it('names a directory given as a file', () => {
    const error = configError({ tls: { certs: [{ cert: 'cert.pem', key: 'a-directory' }] } });

    expect(error.option).toBe('tls.certs[0].key');
    expect(error.message).toContain('directory');
  });

  it('rejects PEM that does not parse', () => {
    const error = configError({ tls: { certs: [{ cert: 'garbage.pem', key: 'key.pem' }] } });

    expect(error.option).toBe('tls.certs[0].cert');
    expect(error.message).toContain('no PEM certificate');
  });

  it('rejects a corrupt certificate block', () => {
    const corrupt = '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n';
    const error = configError({ tls: { certs: [{ cert: corrupt, key: first.key }] } });

    expect(error.option).toBe('tls.certs[0].cert');
    expect(error.message).toContain('does not parse');
  });

  it('rejects a key that is not PEM', () => {
    const error = configError({ tls: { certs: [{ cert: 'cert.pem', key: 'garbage.pem' }] } });

    expect(error.option).toBe('tls.certs[0].key');
    expect(error.message).toContain('private key does not load');
  });

  it('rejects a key of another certificate', () => {
    const error = configError({ tls: { certs: [{ cert: first.cert, key: second.key }] } });

    expect(error.option).toBe('tls.certs[0].key');
    expect(error.message).toContain('does not match tls.certs[0].cert');
  });

  it('rejects a wrong passphrase', () => {
    const error = configError({
      tls: { certs: [{ cert: first.cert, key: encryptedKey, passphrase: 'wrong' }] },
    });

    expect(error.message).toContain('wrong passphrase');
  });

  it('asks for a missing passphrase', () => {
    const error = configError({ tls: { certs: [{ cert: first.cert, key: encryptedKey }] } });

    expect(error.message).toContain('give its passphrase');
  });

  it('never shows a key or passphrase value', () => {
    const error = configError({
      tls: { certs: [{ cert: first.cert, key: first.key, passphrase: 12345 }] },
    });

    expect(error.option).toBe('tls.certs[0].passphrase');
    expect(error.message).not.toContain('12345');
  });
});

describe('parseHostPort', () => {
  it.each([
    { text: '127.0.0.1:9000', host: '127.0.0.1', port: 9000 },
    { text: 'localhost:1', host: 'localhost', port: 1 },
    { text: '[::1]:65535', host: '::1', port: 65535 },
  ])('parses $text', ({ text, host, port }) => {
    expect(parseHostPort(text, 'backend')).toEqual({ host, port });
  });

  it.each(['::1:80', 'localhost', 'localhost:0', 'localhost:65536', '[::1]', ':80', 'a:b'])(
    'rejects %s',
    (text) => {
      expect(() => parseHostPort(text, 'backend')).toThrow(ConfigError);
      expect(() => parseHostPort(text, 'backend')).toThrow(`invalid backend '${text}'`);
    },
  );
});
