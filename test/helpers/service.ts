/**
 * Helpers for integration tests: a shardtls server on port 0 with a generated certificate, and
 * Node `tls` clients that check every echoed byte.
 */
import { randomBytes } from 'node:crypto';
import tls from 'node:tls';

import { createServer, generateSelfSigned, type ShardTlsServer } from '../../dist/index.js';
import type { ServerOptionsInput } from '../../dist/index.js';

export interface TestService {
  server: ShardTlsServer;
  port: number;
  /** The server's certificate, to trust in clients. */
  ca: string;
}

let certificate: Promise<{ cert: string; key: string }> | null = null;

/** One certificate for every test of a file: key generation is the slow part. */
export function testCertificate(): Promise<{ cert: string; key: string }> {
  certificate ??= generateSelfSigned();
  return certificate;
}

/** Starts a silent server on 127.0.0.1 port 0 with the test certificate. */
export async function startService(options: ServerOptionsInput = {}): Promise<TestService> {
  const { cert, key } = await testCertificate();
  const server = createServer({
    host: '127.0.0.1',
    port: 0,
    shards: 2,
    logLevel: 'silent',
    ...options,
    tls: { certs: [{ cert, key }], ...options.tls },
  });
  const address = await server.listen();
  return { server, port: address.port, ca: cert };
}

/** Opens a TLS connection to the service and resolves once the handshake is done. */
export function connect(service: TestService, options: tls.ConnectionOptions = {}) {
  return new Promise<tls.TLSSocket>((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port: service.port,
      ca: service.ca,
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

/**
 * Sends `messages` one after another over one connection, each after the previous echo came back
 * in full, and checks every byte. Resolves with the bytes echoed; rejects on a mismatch.
 */
export async function echoMessages(service: TestService, messages: Buffer[]): Promise<number> {
  const socket = await connect(service);
  const received: Buffer[] = [];
  let receivedBytes = 0;
  let waiting: { bytes: number; resolve: () => void } | null = null;

  socket.on('data', (chunk: Buffer) => {
    received.push(chunk);
    receivedBytes += chunk.byteLength;
    if (waiting !== null && receivedBytes >= waiting.bytes) waiting.resolve();
  });
  const closed = new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.once('close', () => resolve());
  });

  let sentBytes = 0;
  for (const message of messages) {
    sentBytes += message.byteLength;
    const done = new Promise<void>((resolve) => (waiting = { bytes: sentBytes, resolve }));
    socket.write(message);
    if (receivedBytes < sentBytes) await Promise.race([done, closed]);
    if (receivedBytes < sentBytes)
      throw new Error(`connection closed after ${receivedBytes} bytes`);
  }
  socket.end();
  await closed;

  const all = Buffer.concat(received);
  const expected = Buffer.concat(messages);
  if (!all.equals(expected)) {
    let offset = 0;
    while (offset < all.length && all[offset] === expected[offset]) offset++;
    throw new Error(`echo differs at offset ${offset} (${all.length} of ${expected.length} bytes)`);
  }
  return all.byteLength;
}

/** `count` random messages of 1 to `maxSize` bytes. */
export function randomMessages(count: number, maxSize: number): Buffer[] {
  const messages: Buffer[] = [];
  for (let i = 0; i < count; i++)
    messages.push(randomBytes(1 + Math.floor(Math.random() * maxSize)));
  return messages;
}

/** Waits until `check()` is true, polling every 10 ms, or throws after `timeoutMs`. */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Writes `data`, resolves with the first `data.byteLength` bytes read back. */
export function roundTrip(socket: tls.TLSSocket, data: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      bytes += chunk.byteLength;
      if (bytes < data.byteLength) return;
      cleanup();
      resolve(Buffer.concat(chunks));
    };
    const onClose = (): void => {
      cleanup();
      reject(new Error(`connection closed after ${bytes} of ${data.byteLength} bytes`));
    };
    const cleanup = (): void => {
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('error', onClose);
    };
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.once('error', onClose);
    socket.write(data);
  });
}

/** Ends the connection with close_notify and resolves once the server's close arrived. */
export function endAndWait(socket: tls.TLSSocket): Promise<void> {
  return new Promise((resolve) => {
    socket.once('close', () => resolve());
    socket.end();
  });
}
