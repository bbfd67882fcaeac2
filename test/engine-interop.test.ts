import { once } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';

import { afterEach, expect, test } from 'vitest';

import { EOF_ABRUPT, EOF_GRACEFUL, NEED_READ } from '../src/shared/codes.js';
import { createSecureContext } from '../src/tls/context.js';
import { createEngine, type OpenSslEngine } from '../src/tls/openssl-engine.js';
import { testCerts } from './fixtures/certs.js';

const certs = testCerts();
const cleanups: Array<() => void> = [];

afterEach(() => {
  // Last in, first out: sockets close before the engines they feed are destroyed.
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

/**
 * Connects `engine` to a TCP socket: ciphertext from the socket goes to writeInput, the engine's
 * output goes to the socket. `onProgress` runs after every input so the test can read or write.
 */
function attach(engine: OpenSslEngine, socket: net.Socket, onProgress: () => void): () => void {
  const out = new Uint8Array(64 * 1024);
  const flush = (): void => {
    for (let round = 0; round < 1000 && engine.outputPending() > 0; round++) {
      const n = engine.peekOutput(out, 0, out.length);
      socket.write(Buffer.from(out.subarray(0, n)));
      engine.consumeOutput(n);
    }
  };
  socket.on('data', (chunk: Buffer) => {
    let offset = 0;
    for (let round = 0; round < 10_000 && offset < chunk.length; round++) {
      offset += engine.writeInput(chunk, offset, chunk.length - offset);
      onProgress();
      flush();
    }
  });
  socket.on('end', () => {
    engine.writeInputEof();
    onProgress();
  });
  return flush;
}

/** Resolves when `condition` holds, checking after every event; rejects after `ms`. */
function until(condition: () => boolean, ms = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const check = (): void => {
      if (condition()) resolve();
      else if (Date.now() - started > ms) reject(new Error('condition not met in time'));
      else setImmediate(check);
    };
    check();
  });
}

test('client engine talks to node tls.createServer', async () => {
  const server = tls.createServer(
    { cert: certs.server.cert, key: certs.server.key, ALPNProtocols: ['h2', 'http/1.1'] },
    (socket) => {
      socket.on('data', (data) => socket.end(Buffer.concat([Buffer.from('echo: '), data])));
    },
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => server.close());
  const port = (server.address() as net.AddressInfo).port;

  const ctx = createSecureContext({
    ca: certs.ca.cert,
    servername: 'localhost',
    alpnProtocols: ['http/1.1'],
  });
  const engine = createEngine(ctx);
  cleanups.push(() => {
    engine.destroy();
    ctx.destroy();
  });
  const socket = net.connect(port, '127.0.0.1');
  cleanups.push(() => socket.destroy());

  const buf = new Uint8Array(4096);
  let received = '';
  let sent = false;
  let end = 0;
  const flush = attach(engine, socket, () => {
    if (!engine.handshakeDone()) {
      engine.handshake();
      return;
    }
    if (!sent) {
      sent = true;
      engine.write(Buffer.from('hello node'), 0, 10);
    }
    for (let round = 0; round < 1000; round++) {
      const n = engine.read(buf, 0, buf.length);
      if (n > 0) received += Buffer.from(buf.subarray(0, n)).toString();
      else {
        if (n !== NEED_READ) end = n;
        break;
      }
    }
  });
  await once(socket, 'connect');
  engine.handshake();
  flush();

  await until(() => end !== 0);
  expect(received).toBe('echo: hello node');
  // socket.end() on the node side sends close_notify before its FIN.
  expect(end).toBe(EOF_GRACEFUL);
  expect(engine.info().alpnProtocol).toBe('http/1.1');
  expect(engine.info().version).toBe('TLSv1.3');
  expect(engine.info().verifyError).toBeNull();
});

test('server engine serves node tls.connect', async () => {
  const ctx = createSecureContext({ cert: certs.server.cert, key: certs.server.key });
  const engines: OpenSslEngine[] = [];
  const sockets: net.Socket[] = [];
  const results: number[] = [];
  const server = net.createServer((socket) => {
    sockets.push(socket);
    const engine = createEngine(ctx, { isServer: true });
    engines.push(engine);
    const buf = new Uint8Array(4096);
    const flush = attach(engine, socket, () => {
      if (!engine.handshakeDone() && engine.handshake() !== 1) return;
      for (let round = 0; round < 1000; round++) {
        const n = engine.read(buf, 0, buf.length);
        if (n > 0) {
          engine.write(Buffer.from(buf.subarray(0, n)).reverse(), 0, n);
          continue;
        }
        if (n === EOF_GRACEFUL || n === EOF_ABRUPT) {
          results.push(n);
          engine.shutdown();
          flush();
          socket.end();
        }
        break;
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  cleanups.push(() => {
    server.close();
    for (const socket of sockets) socket.destroy();
    for (const engine of engines) engine.destroy();
    ctx.destroy();
  });
  const port = (server.address() as net.AddressInfo).port;

  const client = tls.connect({
    port,
    host: '127.0.0.1',
    servername: 'localhost',
    ca: certs.ca.cert,
  });
  cleanups.push(() => client.destroy());
  await once(client, 'secureConnect');
  expect(client.authorized).toBe(true);

  client.write('abcdef');
  const [reply] = (await once(client, 'data')) as [Buffer];
  expect(reply.toString()).toBe('fedcba');

  client.end();
  await until(() => results.length === 1);
  expect(results[0]).toBe(EOF_GRACEFUL);
});
