import { randomBytes } from 'node:crypto';

import { afterEach, describe, expect, test } from 'vitest';

import { EOF_GRACEFUL, NEED_READ } from '../src/shared/codes.js';
import { createSecureContext, type SecureContextOptions } from '../src/tls/context.js';
import { native } from '../src/tls/native.js';
import {
  createEngine,
  liveEngines,
  releaseIdleBuffers,
  TlsEngineError,
  type EngineOptions,
  type OpenSslEngine,
} from '../src/tls/openssl-engine.js';
import { testCerts } from './fixtures/certs.js';
import { drain, handshakePair, pump } from './fixtures/engine-pair.js';

const certs = testCerts();
const created: OpenSslEngine[] = [];

/** Makes a connected pair; the server uses `serverOptions`, by default the client's. */
function connect(
  options: EngineOptions = {},
  client: SecureContextOptions = {},
  serverOptions: EngineOptions = options,
): { c: OpenSslEngine; s: OpenSslEngine } {
  const serverContext = createSecureContext({ cert: certs.server.cert, key: certs.server.key });
  const clientContext = createSecureContext({
    ca: certs.ca.cert,
    servername: 'localhost',
    ...client,
  });
  const c = createEngine(clientContext, options);
  const s = createEngine(serverContext, { ...serverOptions, isServer: true });
  serverContext.destroy();
  clientContext.destroy();
  created.push(c, s);
  handshakePair(c, s);
  // TLS 1.3 tickets reach the client after the handshake: take them off the wire.
  expect(c.read(new Uint8Array(16), 0, 16)).toBe(NEED_READ);
  return { c, s };
}

afterEach(() => {
  for (const e of created.splice(0)) e.destroy();
  expect(liveEngines()).toBe(0);
});

describe('writeAndTake and pushAndRead', () => {
  test.each([['TLSv1.2' as const], ['TLSv1.3' as const]])('echo both ways on %s', (version) => {
    const { c, s } = connect({}, { maxVersion: version });
    const wire = new Uint8Array(4096);
    const buf = new Uint8Array(4096);
    const ping = Buffer.from('ping from the client');

    expect(c.writeAndTake(ping, 0, ping.length, wire, 0, wire.length)).toBe(ping.length);
    const sealed = c.lastMoved;
    expect(sealed).toBeGreaterThan(ping.length);
    expect(c.outputPending()).toBe(0);

    expect(s.pushAndRead(wire, 0, sealed, buf, 0, buf.length)).toBe(ping.length);
    expect(s.lastMoved).toBe(sealed);
    expect(Buffer.from(buf.subarray(0, ping.length))).toEqual(ping);

    expect(s.writeAndTake(buf, 0, ping.length, wire, 0, wire.length)).toBe(ping.length);
    expect(c.pushAndRead(wire, 0, s.lastMoved, buf, 0, buf.length)).toBe(ping.length);
    expect(Buffer.from(buf.subarray(0, ping.length))).toEqual(ping);
  });

  test('1 MiB passes in records', () => {
    const { c, s } = connect({}, {});
    const data = randomBytes(1024 * 1024);
    const wire = new Uint8Array(64 * 1024);
    const out = Buffer.alloc(data.length);
    let sent = 0;
    let received = 0;

    for (let round = 0; round < 1000 && received < data.length; round++) {
      const length = Math.min(16 * 1024, data.length - sent);
      const wrote = length > 0 ? c.writeAndTake(data, sent, length, wire, 0, wire.length) : 0;
      sent += Math.max(wrote, 0);
      const read = s.pushAndRead(wire, 0, c.lastMoved, out, received, out.length - received);
      expect(s.lastMoved).toBe(c.lastMoved);
      if (read > 0) received += read;
    }

    expect(received).toBe(data.length);
    expect(out.equals(data)).toBe(true);
  });

  test('pushAndRead stops at a full input', () => {
    const { c, s } = connect({}, {}, { bioSize: 4096 });
    const data = randomBytes(12 * 1024);
    const wire = new Uint8Array(16 * 1024);
    expect(c.writeAndTake(data, 0, data.length, wire, 0, wire.length)).toBe(data.length);
    const sealed = c.lastMoved;
    const plain = new Uint8Array(16 * 1024);

    // Only 4 KiB fits in the server's input, and the 12 KiB record is not complete yet.
    expect(s.pushAndRead(wire, 0, sealed, plain, 0, plain.length)).toBe(NEED_READ);
    expect(s.lastMoved).toBe(4096);
  });

  test('zero dstLength only pushes', () => {
    const { c, s } = connect();
    const wire = new Uint8Array(1024);
    c.writeAndTake(Buffer.from('abc'), 0, 3, wire, 0, wire.length);

    expect(s.pushAndRead(wire, 0, c.lastMoved, new Uint8Array(8), 0, 0)).toBe(0);
    expect(s.lastMoved).toBe(c.lastMoved);
    expect(drain(s).data.toString()).toBe('abc');
  });

  test('garbage input throws TlsEngineError', () => {
    const { s } = connect();
    const garbage = new Uint8Array(64).fill(0x17);
    const buf = new Uint8Array(64);

    expect(() => s.pushAndRead(garbage, 0, garbage.length, buf, 0, buf.length)).toThrow(
      TlsEngineError,
    );
    expect(() => s.read(buf, 0, buf.length)).toThrow(TlsEngineError);
  });

  test('rejects ranges outside the arrays', () => {
    const { c, s } = connect();
    const small = new Uint8Array(8);
    expect(() => c.writeAndTake(small, 0, 4, small, 4, 5)).toThrow(RangeError);
    expect(() => c.writeAndPeek(small, 0, 9, small, 0, 8)).toThrow(RangeError);
    expect(() => s.pushAndRead(small, 0, 8, small, -1, 1)).toThrow(RangeError);
    expect(() => s.pushAndRead(small, 0, 1, [] as unknown as Uint8Array, 0, 0)).toThrow(TypeError);
  });
});

describe('writeAndPeek', () => {
  test('copies without consuming', () => {
    const { c, s } = connect();
    const wire = new Uint8Array(4096);

    expect(c.writeAndPeek(Buffer.from('hello'), 0, 5, wire, 0, wire.length)).toBe(5);
    const copied = c.lastMoved;
    expect(copied).toBe(c.outputPending());

    expect(s.writeInput(wire, 0, copied)).toBe(copied);
    expect(c.consumeOutput(copied)).toBe(0);
    expect(drain(s).data.toString()).toBe('hello');
  });

  test('copies only what fits', () => {
    const { c, s } = connect();
    const head = new Uint8Array(10);

    expect(c.writeAndPeek(Buffer.from('a longer message'), 0, 16, head, 0, head.length)).toBe(16);
    expect(c.lastMoved).toBe(10);
    const pending = c.outputPending();
    expect(pending).toBeGreaterThan(10);

    expect(s.writeInput(head, 0, 10)).toBe(10);
    expect(c.consumeOutput(10)).toBe(pending - 10);
    pump(c, s);
    expect(drain(s).data.toString()).toBe('a longer message');
  });

  test('after shutdown returns EOF_GRACEFUL and copies', () => {
    const { c, s } = connect();
    expect(c.shutdown()).toBe(0);
    const wire = new Uint8Array(1024);

    expect(c.writeAndPeek(Buffer.from('late'), 0, 4, wire, 0, wire.length)).toBe(EOF_GRACEFUL);
    expect(c.lastMoved).toBe(c.outputPending());
    expect(c.lastMoved).toBeGreaterThan(0);

    s.writeInput(wire, 0, c.lastMoved);
    c.consumeOutput(c.lastMoved);
    expect(s.read(new Uint8Array(16), 0, 16)).toBe(EOF_GRACEFUL);
  });
});

describe('idle buffer release', () => {
  test('frees buffers after one idle sweep', () => {
    const { c, s } = connect({ releaseBuffers: 'idle' });
    const wire = new Uint8Array(4096);
    const buf = new Uint8Array(4096);
    c.writeAndTake(Buffer.from('x'), 0, 1, wire, 0, wire.length);
    s.pushAndRead(wire, 0, c.lastMoved, buf, 0, buf.length);

    // The first sweep finds both engines busy since the previous one, the second frees both.
    expect(releaseIdleBuffers()).toBe(0);
    expect(releaseIdleBuffers()).toBe(2);
    expect(releaseIdleBuffers()).toBe(0);

    // SSL allocates its buffers again for the next record.
    c.writeAndTake(Buffer.from('again'), 0, 5, wire, 0, wire.length);
    expect(s.pushAndRead(wire, 0, c.lastMoved, buf, 0, buf.length)).toBe(5);
    expect(Buffer.from(buf.subarray(0, 5)).toString()).toBe('again');
  });

  test('skips engines with other policies', () => {
    connect({ releaseBuffers: true });
    connect({ releaseBuffers: false });
    releaseIdleBuffers();
    expect(releaseIdleBuffers()).toBe(0);
  });

  test('keeps a buffered partial record', () => {
    const { c, s } = connect({ releaseBuffers: 'idle' });
    const wire = new Uint8Array(4096);
    c.writeAndTake(Buffer.from('split record'), 0, 12, wire, 0, wire.length);
    // lastMoved is shared by the engines of a thread, so keep it before the next call.
    const sealed = c.lastMoved;
    // Half a record: SSL holds the header and part of the body in its read buffer.
    expect(s.pushAndRead(wire, 0, 10, new Uint8Array(64), 0, 64)).toBe(NEED_READ);

    releaseIdleBuffers();
    // Only the client is freed; the server keeps the partial record.
    expect(releaseIdleBuffers()).toBe(1);
    const plain = new Uint8Array(64);
    expect(s.pushAndRead(wire, 10, sealed - 10, plain, 0, plain.length)).toBe(12);
    expect(Buffer.from(plain.subarray(0, 12)).toString()).toBe('split record');
  });

  test('keeps unread plaintext', () => {
    const { c, s } = connect({ releaseBuffers: 'idle' });
    const wire = new Uint8Array(4096);
    c.writeAndTake(Buffer.from('twelve bytes'), 0, 12, wire, 0, wire.length);
    const head = new Uint8Array(4);
    // The server decrypts the whole record but hands out only 4 bytes of it.
    expect(s.pushAndRead(wire, 0, c.lastMoved, head, 0, head.length)).toBe(4);

    releaseIdleBuffers();
    // Only the client is freed, because the rest of the plaintext is in the server's buffer.
    expect(releaseIdleBuffers()).toBe(1);
    const rest = new Uint8Array(16);
    expect(s.read(rest, 0, rest.length)).toBe(8);
    expect(Buffer.from(head).toString() + Buffer.from(rest.subarray(0, 8)).toString()).toBe(
      'twelve bytes',
    );
  });

  test('rejects an unknown native policy', () => {
    const ctx = createSecureContext({});
    expect(() => native.engineCreate(ctx.nativeHandle(), false, null, 0, null, 3)).toThrow(
      RangeError,
    );
    ctx.destroy();
  });
});
