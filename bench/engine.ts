/**
 * Engine benchmark: an in-memory client/server pair of OpenSSL engines in one thread.
 *
 * Measures 16 KiB bulk throughput (client to server, MB/s of plaintext) and 64-byte echo round
 * trips per second for each buffer policy and each way of moving ciphertext, then the memory
 * that idle connections keep under each buffer policy. `openssl speed -evp aes-128-gcm` runs
 * in the same process tree first, and every figure is printed with its ratio to it. Every loop
 * is bounded by a byte count or a round-trip count and by a deadline.
 *
 * Run: npx tsx bench/engine.ts [--seconds N] [--only bulk|echo|memory]
 *
 * Ciphertext paths:
 * - peek: write, peekOutput, consumeOutput, writeInput, read, as TlsSocket moves it;
 * - transferTo: write, transfer (engine to engine in C), read;
 * - fused: writeAndTake and pushAndRead, two native calls per direction.
 */
import { execFileSync } from 'node:child_process';
import { cpus } from 'node:os';
import { readFileSync } from 'node:fs';

import { createSecureContext, type SecureContext } from '../src/tls/context.js';
import {
  createEngine,
  releaseIdleBuffers,
  type EngineOptions,
  type OpenSslEngine,
} from '../src/tls/openssl-engine.js';
import { native } from '../src/tls/native.js';
import { testCerts } from '../test/fixtures/certs.js';

type Version = 'TLSv1.2' | 'TLSv1.3';
type Policy = NonNullable<EngineOptions['releaseBuffers']>;
type Path = 'peek' | 'transferTo' | 'fused';

const secondsArg = process.argv.indexOf('--seconds');
const SECONDS = secondsArg > 0 ? Number(process.argv[secondsArg + 1]) : 2;
const onlyArg = process.argv.indexOf('--only');
const ONLY = onlyArg > 0 ? process.argv[onlyArg + 1] : 'all';
if (!Number.isFinite(SECONDS) || SECONDS <= 0) {
  throw new Error(
    `invalid --seconds '${process.argv[secondsArg + 1]}': expected a positive number`,
  );
}

const POLICIES: ReadonlyArray<[string, Policy]> = [
  ['release per record', true],
  ['keep buffers', false],
  ['release when idle', 'idle'],
];

/**
 * CPU seconds (user + system) of this process since `start`. Rates use CPU time, not wall time,
 * because other processes share the machine's cores and would otherwise slow every figure.
 */
function cpuSeconds(start: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1e6;
}

function cpuModel(): string {
  const match = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
  return match?.[1] ?? 'unknown';
}

function loadAverage(): string {
  return readFileSync('/proc/loadavg', 'utf8').trim().split(' ').slice(0, 3).join(' ');
}

interface Contexts {
  server: SecureContext;
  client: SecureContext;
}

/** Makes a server context and a client context pinned to one version and AES-128-GCM. */
function contexts(version: Version): Contexts {
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
  return { server, client };
}

/** Makes a connected client/server pair. Contexts made here are released with the engines. */
function pair(
  version: Version,
  bioSize: number,
  releaseBuffers: Policy,
  shared?: Contexts,
): [OpenSslEngine, OpenSslEngine] {
  const { server, client } = shared ?? contexts(version);
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
  if (shared === undefined) {
    server.destroy();
    client.destroy();
  }
  return [c, s];
}

/** Client-to-server bulk copy of 16 KiB writes. Returns MB/s (1e6 bytes) of plaintext. */
function bulk(version: Version, policy: Policy, path: Path): number {
  const [c, s] = pair(version, 64 * 1024, policy);
  const src = new Uint8Array(16 * 1024).fill(7);
  const wire = new Uint8Array(64 * 1024);
  const dst = new Uint8Array(64 * 1024);
  const deadline = performance.now() + SECONDS * 1000;
  const maxBytes = 64 * 1024 ** 3;
  let bytes = 0;

  const start = process.cpuUsage();
  while (bytes < maxBytes) {
    for (let i = 0; i < 64; i++) {
      if (path === 'fused') {
        // One record per write, and pushAndRead returns that whole record's plaintext.
        c.writeAndTake(src, 0, src.length, wire, 0, wire.length);
        const r = s.pushAndRead(wire, 0, c.lastMoved, dst, 0, dst.length);
        if (r !== src.length) throw new Error(`bulk read ${r} bytes, expected ${src.length}`);
        bytes += r;
        continue;
      }
      c.write(src, 0, src.length);
      if (path === 'transferTo') {
        c.transferTo(s);
      } else {
        const n = c.peekOutput(wire, 0, wire.length);
        c.consumeOutput(s.writeInput(wire, 0, n));
      }
      for (let r = s.read(dst, 0, dst.length); r > 0; r = s.read(dst, 0, dst.length)) bytes += r;
    }
    if (performance.now() > deadline) break;
  }

  const seconds = cpuSeconds(start);
  c.destroy();
  s.destroy();
  return bytes / seconds / 1e6;
}

/** 64-byte echo: the client writes, the server reads and writes back, the client reads. */
function echo(version: Version, policy: Policy, path: Path): number {
  const [c, s] = pair(version, 0, policy);
  const msg = new Uint8Array(64).fill(1);
  const wire = new Uint8Array(4096);
  const buf = new Uint8Array(4096);
  const deadline = performance.now() + SECONDS * 1000;
  const maxTrips = 100_000_000;
  let trips = 0;

  const start = process.cpuUsage();
  while (trips < maxTrips) {
    for (let i = 0; i < 1000; i++) {
      let got: number;
      if (path === 'fused') {
        c.writeAndTake(msg, 0, 64, wire, 0, wire.length);
        got = s.pushAndRead(wire, 0, c.lastMoved, buf, 0, buf.length);
        s.writeAndTake(buf, 0, got, wire, 0, wire.length);
        got = c.pushAndRead(wire, 0, s.lastMoved, buf, 0, buf.length);
      } else if (path === 'transferTo') {
        c.write(msg, 0, 64);
        c.transferTo(s);
        got = s.read(buf, 0, buf.length);
        s.write(buf, 0, got);
        s.transferTo(c);
        got = c.read(buf, 0, buf.length);
      } else {
        c.write(msg, 0, 64);
        let n = c.peekOutput(wire, 0, wire.length);
        c.consumeOutput(s.writeInput(wire, 0, n));
        got = s.read(buf, 0, buf.length);
        s.write(buf, 0, got);
        n = s.peekOutput(wire, 0, wire.length);
        s.consumeOutput(c.writeInput(wire, 0, n));
        got = c.read(buf, 0, buf.length);
      }
      if (got !== 64) throw new Error(`echo returned ${got}, expected 64 bytes`);
    }
    trips += 1000;
    if (performance.now() > deadline) break;
  }

  const seconds = cpuSeconds(start);
  c.destroy();
  s.destroy();
  return trips / seconds;
}

/**
 * RSS per engine of `pairs` connections that each moved 16 KiB both ways and then went idle.
 * It runs in a child process per policy, so the heaps of the policies do not mix.
 */
function idleMemory(policy: Policy): number {
  const out = execFileSync(
    process.execPath,
    [...process.execArgv, process.argv[1], '--memory-child', String(policy)],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] },
  );
  return Number(out.trim());
}

function memoryChild(policy: Policy): void {
  const pairs = 500;
  const data = new Uint8Array(16 * 1024).fill(3);
  const wire = new Uint8Array(64 * 1024);
  const buf = new Uint8Array(64 * 1024);
  const kept: OpenSslEngine[] = [];

  const shared = contexts('TLSv1.3');

  // Warm-up pairs settle allocator arenas and OpenSSL's lazily built tables.
  for (let i = 0; i < 20; i++) {
    for (const e of pair('TLSv1.3', 0, policy, shared)) e.destroy();
  }
  const before = process.memoryUsage().rss;
  for (let i = 0; i < pairs; i++) {
    const [c, s] = pair('TLSv1.3', 0, policy, shared);
    c.writeAndTake(data, 0, data.length, wire, 0, wire.length);
    s.pushAndRead(wire, 0, c.lastMoved, buf, 0, buf.length);
    s.writeAndTake(data, 0, data.length, wire, 0, wire.length);
    c.pushAndRead(wire, 0, s.lastMoved, buf, 0, buf.length);
    kept.push(c, s);
    // Two sweeps with no call in between: the older connections count as idle.
    if (i % 50 === 49) {
      releaseIdleBuffers();
      releaseIdleBuffers();
    }
  }
  releaseIdleBuffers();
  releaseIdleBuffers();
  const perEngine = (process.memoryUsage().rss - before) / kept.length;
  for (const e of kept) e.destroy();
  shared.server.destroy();
  shared.client.destroy();
  console.log(String(Math.round(perEngine)));
}

/** Runs `openssl speed` for one block size and returns bytes/s and blocks/s. */
function opensslSpeed(bytes: number): { command: string; bytesPerSecond: number; blocks: number } {
  const args = [
    'speed',
    '-evp',
    'aes-128-gcm',
    '-bytes',
    String(bytes),
    '-seconds',
    String(SECONDS),
  ];
  const out = execFileSync('openssl', args, {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const line = out.split('\n').find((l) => /^aes-128-gcm/i.test(l));
  // The table reports thousands of bytes per second processed.
  const kbps = Number(line?.trim().split(/\s+/).at(-1)?.replace(/k$/, ''));
  const bytesPerSecond = kbps * 1000;
  return { command: `openssl ${args.join(' ')}`, bytesPerSecond, blocks: bytesPerSecond / bytes };
}

function main(): void {
  const command = `npx tsx bench/engine.ts ${process.argv.slice(2).join(' ')}`.trim();
  console.log(`command: ${command}`);
  console.log(`node ${process.version}, OpenSSL in node: ${native.opensslVersion()}`);
  console.log(`openssl CLI: ${execFileSync('openssl', ['version'], { encoding: 'utf8' }).trim()}`);
  console.log(`machine: ${cpuModel()}, ${cpus().length} cores, ${SECONDS} s per measurement`);
  // Other processes on the machine slow every figure; the load average shows how busy it was.
  console.log(`load average at start: ${loadAverage()}`);
  console.log();

  const versions: Version[] = ['TLSv1.3', 'TLSv1.2'];
  if (ONLY === 'all' || ONLY === 'bulk') {
    const speed = opensslSpeed(16 * 1024);
    const mbps = speed.bytesPerSecond / 1e6;
    console.log(`${speed.command}: ${mbps.toFixed(0)} MB/s (encrypt only, one core)`);
    console.log('The pair encrypts and decrypts every byte on one core, so 0.5 x is the ceiling.');
    for (const version of versions) {
      for (const [label, policy] of POLICIES) {
        for (const path of ['peek', 'fused'] as const) {
          const rate = bulk(version, policy, path);
          const ratio = (rate / mbps).toFixed(2);
          console.log(
            `${version} bulk 16 KiB, ${label}, ${path}: ${rate.toFixed(0)} MB/s (${ratio} x speed)`,
          );
        }
      }
    }
    console.log();
  }

  if (ONLY === 'all' || ONLY === 'echo') {
    const speed = opensslSpeed(64);
    const blocks = speed.blocks / 1000;
    console.log(`${speed.command}: ${blocks.toFixed(0)}k blocks/s (encrypt only, one core)`);
    console.log('A round trip seals and opens two 64-byte records, so 0.25 x is the ceiling.');
    for (const version of versions) {
      for (const [label, policy] of POLICIES) {
        for (const path of ['peek', 'transferTo', 'fused'] as const) {
          const rate = echo(version, policy, path) / 1000;
          const ratio = (rate / blocks).toFixed(3);
          console.log(
            `${version} 64-byte echo, ${label}, ${path}: ${rate.toFixed(0)}k round trips/s ` +
              `(${ratio} x speed)`,
          );
        }
      }
    }
    console.log();
  }

  if (ONLY === 'all' || ONLY === 'memory') {
    console.log('RSS per engine, 500 TLS 1.3 pairs that moved 16 KiB each way, then idle:');
    for (const [label, policy] of POLICIES) {
      console.log(`  ${label}: ${(idleMemory(policy) / 1024).toFixed(1)} KiB`);
    }
    console.log();
  }

  console.log(`load average at end: ${loadAverage()}`);
}

const childArg = process.argv.indexOf('--memory-child');
if (childArg > 0) {
  const value = process.argv[childArg + 1];
  memoryChild(value === 'idle' ? 'idle' : value === 'true');
} else {
  main();
}
