/**
 * `shardtls serve` as a child process against real clients: OpenSSL's `s_client`, Node's `tls`
 * and Python's `ssl`. Covers both TLS versions, ALPN, SNI, client certificates, handler modules,
 * and clients that send plaintext or corrupt records. Run `npm run build` first.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { get } from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';

import { afterAll, beforeAll, describe, expect, test } from 'vitest';

import { testCerts } from './fixtures/certs.js';
import {
  runClient,
  startServe,
  writeCertFiles,
  type CertFiles,
  type ServeProcess,
} from './fixtures/serve-process.js';
import { endAndWait, roundTrip } from './helpers/service.js';

const PYTHON_CLIENT = fileURLToPath(new URL('./fixtures/serve-client.py', import.meta.url));
const UPPER_HANDLER = fileURLToPath(new URL('./fixtures/serve-upper.mjs', import.meta.url));

let files: CertFiles;
const started: ServeProcess[] = [];

beforeAll(() => {
  files = writeCertFiles();
});

afterAll(async () => {
  await Promise.all(started.map((serve) => serve.stop()));
  rmSync(files.dir, { recursive: true, force: true });
});

async function serve(args: string[]): Promise<ServeProcess> {
  const service = await startServe(['--log-level', 'debug', ...args], files.dir);
  started.push(service);
  return service;
}

/** Runs `openssl s_client`, sends `line`, waits for its echo, then ends with close_notify. */
function sClient(port: number, args: string[], line = 'ping from s_client') {
  return runClient(
    'openssl',
    ['s_client', '-connect', `127.0.0.1:${port}`, '-CAfile', files.ca, ...args],
    { input: `${line}\n`, closeInputAfter: `${line}\n`, cwd: files.dir },
  );
}

/** Opens a verified Node `tls` connection and resolves after the handshake. */
function connect(port: number, options: tls.ConnectionOptions = {}): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port,
      ca: testCa(),
      servername: 'localhost',
      ...options,
    });
    socket.once('secureConnect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

function testCa(): string {
  return testCerts().ca.cert;
}

/** Resolves when the socket closes, with the error it saw first (or null). */
function closed(socket: net.Socket): Promise<Error | null> {
  if (socket.destroyed) return Promise.resolve(null);
  return new Promise((resolve) => {
    let failure: Error | null = null;
    socket.on('error', (error) => (failure ??= error));
    socket.once('close', () => resolve(failure));
  });
}

describe('echo service with two certificates and ALPN', () => {
  let service: ServeProcess;

  beforeAll(async () => {
    service = await serve([
      '--shards',
      '2',
      '--cert',
      files.serverCert,
      '--key',
      files.serverKey,
      '--cert',
      files.sniCert,
      '--key',
      files.sniKey,
      '--alpn',
      'http/1.1',
    ]);
  });

  test.each([
    { version: 'TLSv1.2', flag: '-tls1_2' },
    { version: 'TLSv1.3', flag: '-tls1_3' },
  ])('s_client echoes a line over $version', async ({ version, flag }) => {
    const result = await sClient(service.port, [flag, '-servername', 'localhost']);

    expect(result.code).toBe(0);
    expect(result.stdout).toContain('ping from s_client\n');
    expect(result.stdout).toMatch(new RegExp(`Protocol\\s*:\\s*${version.replace('.', '\\.')}`));
    expect(result.stdout).toContain('Verify return code: 0 (ok)');
  });

  test('s_client negotiates ALPN http/1.1', async () => {
    const result = await sClient(service.port, ['-alpn', 'h2,http/1.1']);

    expect(result.code).toBe(0);
    expect(result.stdout).toContain('ALPN protocol: http/1.1');
    expect(result.stdout).toContain('ping from s_client\n');
  });

  test('unknown ALPN protocol fails handshake', async () => {
    const result = await sClient(service.port, ['-alpn', 'no-such-protocol/9']);

    expect(result.code).not.toBe(0);
    // RFC 7301 section 3.2: without a protocol in common the server sends no_application_protocol.
    expect(result.stderr).toContain('no application protocol');
    expect(result.stdout).not.toContain('ping from s_client\n');
  });

  test.each([
    { servername: 'localhost', subject: 'CN = localhost', san: 'DNS:localhost' },
    { servername: 'sni.test', subject: 'CN = sni.test', san: 'DNS:sni.test' },
    { servername: 'a.wild.test', subject: 'CN = sni.test', san: 'DNS:*.wild.test' },
  ])('SNI $servername selects $subject', async ({ servername, subject, san }) => {
    const result = await sClient(service.port, ['-servername', servername, '-showcerts']);

    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`subject=${subject}`);
    expect(result.stdout).toContain('Verify return code: 0 (ok)');
    // The SAN of the leaf the server sent, read back with openssl x509.
    const leaf = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/.exec(
      result.stdout,
    );
    expect(leaf).not.toBeNull();
    const sans = await runClient('openssl', ['x509', '-noout', '-ext', 'subjectAltName'], {
      input: leaf![0],
    });
    expect(sans.stdout).toContain(san);
  });

  test('unknown SNI name gets default certificate', async () => {
    const result = await sClient(service.port, ['-servername', 'other.test']);

    expect(result.code).toBe(0);
    expect(result.stdout).toContain('subject=CN = localhost');
    expect(result.stdout).toContain('ping from s_client\n');
  });

  test.each(['TLSv1.2', 'TLSv1.3'] as const)('Node tls echoes bytes over %s', async (version) => {
    const socket = await connect(service.port, { minVersion: version, maxVersion: version });
    const data = randomBytes(300_000);

    const echoed = await roundTrip(socket, data);

    expect(socket.getProtocol()).toBe(version);
    expect(socket.alpnProtocol).toBe(false);
    expect(echoed.equals(data)).toBe(true);
    await endAndWait(socket);
  });

  test('Python ssl echoes and exchanges close_notify', async () => {
    const result = await runClient('python3', [
      PYTHON_CLIENT,
      'echo',
      '--port',
      String(service.port),
      '--ca',
      files.ca,
      '--size',
      '200000',
    ]);
    expect(result.stderr).toBe('');
    const output = JSON.parse(result.stdout) as Record<string, unknown>;

    expect(result.code).toBe(0);
    expect(output.version).toBe('TLSv1.3');
    expect(output.error).toBeNull();
    expect(output.received_bytes).toBe(200_000);
    expect(output.received_sha256).toBe(output.sent_sha256);
    expect(output.close_notify).toBe(true);
  });

  test('plaintext HTTP request is closed', async () => {
    const plain = net.connect({ host: '127.0.0.1', port: service.port });
    const received: Buffer[] = [];
    plain.on('data', (chunk: Buffer) => received.push(chunk));
    const done = closed(plain);
    plain.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n');

    await done;

    // Whatever came back is a TLS alert record (content type 21), never an HTTP response.
    const reply = Buffer.concat(received);
    if (reply.byteLength > 0) expect(reply[0]).toBe(21);
    expect(reply.toString('latin1')).not.toContain('HTTP/');
    await service.waitForLog((line) => line.msg === 'handshake failed');

    // The service goes on.
    const socket = await connect(service.port);
    expect((await roundTrip(socket, Buffer.from('after plaintext'))).toString()).toBe(
      'after plaintext',
    );
    await endAndWait(socket);
  });

  test('corrupt record closes only its connection', async () => {
    const neighbour = await connect(service.port);
    const raw = net.connect({ host: '127.0.0.1', port: service.port });
    const victim = await connect(service.port, { socket: raw });
    expect((await roundTrip(victim, Buffer.from('before'))).toString()).toBe('before');
    const victimClosed = closed(victim);

    // An application_data record header (RFC 8446 section 5.1) with bytes that fail to decrypt.
    const garbage = Buffer.concat([Buffer.from([23, 3, 3, 0, 64]), randomBytes(64)]);
    raw.write(garbage);

    await victimClosed;
    expect(victim.destroyed).toBe(true);
    const data = randomBytes(50_000);
    expect((await roundTrip(neighbour, data)).equals(data)).toBe(true);
    await endAndWait(neighbour);
  });

  test('truncated record closes only its connection', async () => {
    const neighbour = await connect(service.port);
    const raw = net.connect({ host: '127.0.0.1', port: service.port });
    const victim = await connect(service.port, { socket: raw });
    const victimClosed = closed(victim);

    // A header that announces 1000 bytes, 10 of them sent, then the TCP FIN.
    raw.end(Buffer.concat([Buffer.from([23, 3, 3, 0x03, 0xe8]), randomBytes(10)]));

    await victimClosed;
    const data = randomBytes(20_000);
    expect((await roundTrip(neighbour, data)).equals(data)).toBe(true);
    await endAndWait(neighbour);
  });
});

describe('echo service without ALPN', () => {
  let service: ServeProcess;

  beforeAll(async () => {
    service = await serve(['--shards', '1', '--cert', files.serverCert, '--key', files.serverKey]);
  });

  // A server without a protocol list omits the extension (RFC 7301 section 3.2).
  test('client ALPN list is ignored', async () => {
    const result = await sClient(service.port, ['-alpn', 'h2,http/1.1']);

    expect(result.stderr).not.toContain('no application protocol');
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('No ALPN negotiated');
    expect(result.stdout).toContain('ping from s_client\n');
  });

  test('client without ALPN is served', async () => {
    const result = await sClient(service.port, []);

    expect(result.code).toBe(0);
    expect(result.stdout).toContain('No ALPN negotiated');
    expect(result.stdout).toContain('ping from s_client\n');
  });
});

describe('echo service requiring a client certificate', () => {
  let service: ServeProcess;

  beforeAll(async () => {
    service = await serve([
      '--shards',
      '2',
      '--cert',
      files.serverCert,
      '--key',
      files.serverKey,
      '--ca',
      files.ca,
      '--require-cert',
    ]);
  });

  const withCert = (): string[] => ['-cert', files.clientCert, '-key', files.clientKey];

  test.each(['-tls1_2', '-tls1_3'])('s_client with certificate works (%s)', async (flag) => {
    const result = await sClient(service.port, [flag, ...withCert()]);

    expect(result.code).toBe(0);
    expect(result.stdout).toContain('ping from s_client\n');
    expect(result.stdout).toContain('CN = shardtls test CA');
  });

  test.each([
    { flag: '-tls1_3', alert: 'alert certificate required' },
    { flag: '-tls1_2', alert: 'alert handshake failure' },
  ])('s_client without certificate rejected ($flag)', async ({ flag, alert }) => {
    const result = await sClient(service.port, [flag]);

    // TLS 1.3 has a certificate_required alert for this; TLS 1.2 sends handshake_failure.
    expect(result.stderr).toContain(alert);
    expect(result.stdout).not.toContain('ping from s_client\n');
    expect(result.code).not.toBe(0);
  });

  test('rejected client leaves others served', async () => {
    const rejected = await sClient(service.port, ['-tls1_2']);
    expect(rejected.stdout).not.toContain('ping from s_client\n');
    expect(rejected.stderr).toContain('alert');

    const accepted = await sClient(service.port, withCert(), 'still serving');
    expect(accepted.code).toBe(0);
    expect(accepted.stdout).toContain('still serving\n');
  });

  test('Node tls with certificate echoes', async () => {
    const client = testCerts().client;
    const socket = await connect(service.port, { cert: client.cert, key: client.key });

    const data = randomBytes(64_000);
    expect((await roundTrip(socket, data)).equals(data)).toBe(true);
    await endAndWait(socket);
  });
});

describe('handler module', () => {
  test('uppercasing module runs in every shard', async () => {
    const service = await serve([
      '--shards',
      '2',
      '--cert',
      files.serverCert,
      '--key',
      files.serverKey,
      '--handler',
      UPPER_HANDLER,
      '--stats-port',
      '0',
    ]);
    const statsLine = await service.waitForLog((line) => line.msg === 'stats endpoint listening');
    const statsPort = Number(String(statsLine.address).split(':')[1]);

    // Round-robin places four connections two on each shard.
    const sockets = await Promise.all(Array.from({ length: 4 }, () => connect(service.port)));
    for (const [i, socket] of sockets.entries()) {
      const reply = await roundTrip(socket, Buffer.from(`hello ${i}`));
      expect(reply.toString()).toBe(`HELLO ${i}`);
    }

    // One connection makes the module throw: only that one closes, and the error is logged.
    const failing = sockets[1];
    const failingClosed = closed(failing);
    failing.write('please fail');
    await failingClosed;
    const logged = await service.waitForLog(
      (line) => line.msg === 'handler failed; closing its connection',
    );
    expect(logged.shard).toEqual(expect.any(Number));
    expect(logged.conn).toEqual(expect.any(Number));
    expect(String(logged.err)).toContain('handler failed on request');

    for (const socket of [sockets[0], sockets[2], sockets[3]]) {
      expect((await roundTrip(socket, Buffer.from('go on'))).toString()).toBe('GO ON');
      await endAndWait(socket);
    }

    const stats = (await getJson(statsPort, '/stats')) as {
      shards: { shardId: number; connectionsTotal: number; handlerErrors: number }[];
    };
    expect(stats.shards).toHaveLength(2);
    for (const shard of stats.shards) expect(shard.connectionsTotal).toBe(2);
    const errors = stats.shards.reduce((sum, shard) => sum + shard.handlerErrors, 0);
    expect(errors).toBe(1);
    expect(stats.shards.find((shard) => shard.shardId === logged.shard)?.handlerErrors).toBe(1);
  });

  test('missing module exits 2 with one line', async () => {
    const result = await runClient(
      process.execPath,
      [
        fileURLToPath(new URL('../dist/main/cli.js', import.meta.url)),
        'serve',
        '--port',
        '0',
        '--shards',
        '1',
        '--handler',
        './no-such-handler.mjs',
      ],
      { cwd: files.dir },
    );

    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^shardtls: .*no-such-handler\.mjs/);
    expect(result.stderr.trimEnd().split('\n')).toHaveLength(1);
  });
});

function getJson(port: number, urlPath: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port, path: urlPath }, (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (text += chunk));
      response.on('end', () => resolve(JSON.parse(text)));
    }).on('error', reject);
  });
}
