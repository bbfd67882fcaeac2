/**
 * Engine benchmark: an in-memory client/server pair of OpenSSL engines in one thread.
 *
 * Measures 16 KiB bulk throughput (client to server, MB/s of plaintext) and 64-byte echo round
 * trips per second, then runs `openssl speed -evp aes-128-gcm` on the same machine for scale.
 * Every loop is bounded by a byte count or a round-trip count and by a deadline.
 *
 * Run: npx tsx bench/engine.ts [--seconds N] [--only bulk|echo]
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

import { createSecureContext } from '../src/tls/context.js';
import { createEngine, type OpenSslEngine } from '../src/tls/openssl-engine.js';
import { native } from '../src/tls/native.js';
import { testCerts } from '../test/fixtures/certs.js';

const secondsArg = process.argv.indexOf('--seconds');
const SECONDS = secondsArg > 0 ? Number(process.argv[secondsArg + 1]) : 3;
const onlyArg = process.argv.indexOf('--only');
const ONLY = onlyArg > 0 ? process.argv[onlyArg + 1] : 'all';

function cpuModel(): string {
  const match = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
  return match?.[1] ?? 'unknown';
}

function pair(
  version: 'TLSv1.2' | 'TLSv1.3',
  bioSize: number,
  releaseBuffers = true,
): [OpenSslEngine, OpenSslEngine] {
  const certs = testCerts();
  const server = createSecureContext({ cert: certs.server.cert, key: certs.server.key });
  const client = createSecureContext({
    ca: certs.ca.cert,
    servername: 'localhost',
    minVersion: version,
    maxVersion: version,
    ciphersuites: 'TLS_AES_128_GCM_SHA256',
    ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256',
  });
  const c = createEngine(client, { bioSize, releaseBuffers });
  const s = createEngine(server, { isServer: true, bioSize, releaseBuffers });
  for (let round = 0; round < 50 && !(c.handshakeDone() && s.handshakeDone()); round++) {
    c.handshake();
    c.transferTo(s);
    s.handshake();
    s.transferTo(c);
  }
  if (!c.handshakeDone() || !s.handshakeDone()) throw new Error('handshake did not finish');
  // Take the TLS 1.3 session tickets off the wire.
  const sink = new Uint8Array(1024);
  c.read(sink, 0, sink.length);
  server.destroy();
  client.destroy();
  return [c, s];
}

/** Client-to-server bulk copy through peekOutput/consumeOutput/writeInput, as a socket would. */
function bulk(version: 'TLSv1.2' | 'TLSv1.3', releaseBuffers: boolean): number {
  const [c, s] = pair(version, 64 * 1024, releaseBuffers);
  const src = new Uint8Array(16 * 1024).fill(7);
  const wire = new Uint8Array(64 * 1024);
  const dst = new Uint8Array(64 * 1024);
  const deadline = performance.now() + SECONDS * 1000;
  const maxBytes = 64 * 1024 ** 3;
  let bytes = 0;
  const start = performance.now();
  while (bytes < maxBytes) {
    for (let i = 0; i < 64; i++) {
      c.write(src, 0, src.length);
      const n = c.peekOutput(wire, 0, wire.length);
      c.consumeOutput(s.writeInput(wire, 0, n));
      for (let r = s.read(dst, 0, dst.length); r > 0; r = s.read(dst, 0, dst.length)) bytes += r;
    }
    if (performance.now() > deadline) break;
  }
  const seconds = (performance.now() - start) / 1000;
  c.destroy();
  s.destroy();
  return bytes / seconds / 1e6;
}

/**
 * 64-byte echo: the client writes, the server reads and writes back, the client reads. With
 * `combined`, ciphertext moves by `transferTo` (one native call per direction) instead of
 * peekOutput + consumeOutput + writeInput.
 */
function echo(version: 'TLSv1.2' | 'TLSv1.3', combined: boolean, releaseBuffers: boolean): number {
  const [c, s] = pair(version, 0, releaseBuffers);
  const msg = new Uint8Array(64).fill(1);
  const wire = new Uint8Array(4096);
  const buf = new Uint8Array(4096);
  const deadline = performance.now() + SECONDS * 1000;
  const maxTrips = 100_000_000;
  let trips = 0;

  const start = performance.now();
  while (trips < maxTrips) {
    for (let i = 0; i < 1000; i++) {
      c.write(msg, 0, 64);
      if (combined) {
        c.transferTo(s);
      } else {
        const n = c.peekOutput(wire, 0, wire.length);
        c.consumeOutput(s.writeInput(wire, 0, n));
      }
      const got = s.read(buf, 0, buf.length);
      s.write(buf, 0, got);
      if (combined) {
        s.transferTo(c);
      } else {
        const n = s.peekOutput(wire, 0, wire.length);
        s.consumeOutput(c.writeInput(wire, 0, n));
      }
      if (c.read(buf, 0, buf.length) !== 64) throw new Error('echo lost bytes');
    }
    trips += 1000;
    if (performance.now() > deadline) break;
  }

  const seconds = (performance.now() - start) / 1000;
  c.destroy();
  s.destroy();
  return trips / seconds;
}

/** Runs `openssl speed` for 16 KiB AES-128-GCM blocks and returns MB/s (1e6 bytes). */
function opensslSpeed(): { command: string; mbps: number } {
  const args = ['speed', '-evp', 'aes-128-gcm', '-bytes', '16384', '-seconds', String(SECONDS)];
  const out = execFileSync('openssl', args, {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const line = out.split('\n').find((l) => /^aes-128-gcm/i.test(l));
  // The table reports thousands of bytes per second processed.
  const kbps = Number(line?.trim().split(/\s+/).at(-1)?.replace(/k$/, ''));
  return { command: `openssl ${args.join(' ')}`, mbps: kbps / 1000 };
}

console.log(`node ${process.version}, OpenSSL in node: ${native.opensslVersion()}`);
console.log(`openssl CLI: ${execFileSync('openssl', ['version'], { encoding: 'utf8' }).trim()}`);
console.log(`CPU: ${cpuModel()}, ${SECONDS} s per measurement`);
// Other processes on the machine slow every figure; the load average shows how busy it was.
console.log(`load average at start: ${readFileSync('/proc/loadavg', 'utf8').trim()}`);
console.log();

const speed = opensslSpeed();
console.log(`${speed.command}: ${speed.mbps.toFixed(0)} MB/s (encrypt only, one core)`);
console.log('The pair below encrypts and decrypts every byte on one core: 0.5 x is the ceiling.');
const modes = [
  ['release buffers', true],
  ['keep buffers', false],
] as const;
for (const version of ONLY === 'echo' ? [] : (['TLSv1.3', 'TLSv1.2'] as const)) {
  for (const [label, release] of modes) {
    const mbps = bulk(version, release);
    const ratio = (mbps / speed.mbps).toFixed(2);
    console.log(`${version} bulk 16 KiB, ${label}: ${mbps.toFixed(0)} MB/s (${ratio} x speed)`);
  }
}
for (const version of ONLY === 'bulk' ? [] : (['TLSv1.3', 'TLSv1.2'] as const)) {
  for (const [label, release] of modes) {
    for (const combined of [false, true]) {
      const rate = echo(version, combined, release) / 1000;
      const path = combined ? 'transferTo' : 'peek/consume/writeInput';
      console.log(`${version} 64-byte echo, ${label}, ${path}: ${rate.toFixed(0)}k round trips/s`);
    }
  }
}
