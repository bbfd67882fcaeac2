import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { BenchResult } from '../src/main/bench/run.js';
import { resolveOptions, BenchUsageError } from '../src/main/bench/options.js';
import { PERIOD, buildTable, slice, startOf, verify } from '../src/main/bench/pattern.js';
import type { EchoServer } from './bench-helpers.js';
import { runBenchCommand, startEchoServer } from './bench-helpers.js';

describe('bench payload pattern', () => {
  test('verify accepts the sent bytes', () => {
    const table = buildTable(7);
    const start = startOf(42);
    const sent = Buffer.concat([slice(table, start, 0, 65_536), slice(table, start, 65_536, 500)]);
    expect(verify(table, start, 0, sent)).toBe(-1);
    expect(verify(table, start, 1000, sent.subarray(1000))).toBe(-1);
  });

  test('table repeats with its period', () => {
    const table = buildTable(9);
    for (let i = PERIOD; i < table.length; i++) {
      if (table[i] !== table[i - PERIOD])
        expect.fail(`table[${i}] differs from table[${i - PERIOD}]`);
    }
  });

  test('slices at any position agree', () => {
    const table = buildTable(3);
    const start = startOf(5);
    const whole = Buffer.from(slice(table, start, 60_000, 65_536));
    expect(verify(table, start, 60_000, whole)).toBe(-1);
    expect(verify(table, start, 65_000, whole.subarray(5000))).toBe(-1);
  });

  test('verify finds a flipped byte', () => {
    const table = buildTable(7);
    const start = startOf(42);
    const sent = Buffer.from(slice(table, start, 100, 4000));
    sent[1234]! ^= 1;
    expect(verify(table, start, 100, sent)).toBe(1234);
  });

  test('connections with other seeds get other bytes', () => {
    const table = buildTable(7);
    const a = slice(table, startOf(1), 0, 64);
    const b = slice(table, startOf(2), 0, 64);
    expect(a.equals(b)).toBe(false);
  });
});

describe('bench option checks', () => {
  test.each([
    [{ port: 0 }, '--port'],
    [{ port: 443, connections: 0 }, '--connections'],
    [{ port: 443, size: 1.5 }, '--size'],
    [{ port: 443, pipeline: -1 }, '--pipeline'],
    [{ port: 443, duration: 0 }, '--duration'],
    [{ port: 443, duration: 1, requests: 5 }, '--duration'],
    [{ port: 443, ca: '/nonexistent/ca.pem' }, '--ca'],
    [{ port: 443, ca: '/etc/hostname', insecure: true }, '--ca'],
    [{ port: 443, statsUrl: 'ftp://127.0.0.1/' }, '--stats-url'],
  ])('rejects %o', (options, name) => {
    expect(() => resolveOptions(options)).toThrow(BenchUsageError);
    expect(() => resolveOptions(options)).toThrow(name);
  });

  test('fills bulk defaults', () => {
    const options = resolveOptions({ port: 443, mode: 'bulk' });
    expect(options.size).toBe(16_384);
    expect(options.pipeline).toBe(16);
    expect(options.durationMs).toBe(10_000);
  });
});

describe('shardtls bench against a Node tls echo server', () => {
  let server: EchoServer;
  let caFile: string;

  beforeAll(async () => {
    server = await startEchoServer();
    caFile = `/tmp/shardtls-bench-test-ca-${process.pid}.pem`;
    writeFileSync(caFile, server.cert);
  });

  afterAll(async () => {
    await server.close();
  });

  async function benchJson(args: string[]): Promise<BenchResult> {
    const output = await runBenchCommand([
      '--port',
      String(server.port),
      '--insecure',
      '--threads',
      '2',
      '--json',
      ...args,
    ]);
    expect(output.stderr).toBe('');
    expect(output.code).toBe(0);
    return JSON.parse(output.stdout) as BenchResult;
  }

  test('echo ping-pong completes requests', async () => {
    const result = await benchJson(['--connections', '4', '--requests', '400']);
    expect(result.ok).toBe(true);
    expect(result.requests).toBe(400);
    expect(result.bytesReceived).toBe(400 * 1024);
    expect(result.handshakes).toBe(4);
    expect(result.latencyUs.p50).toBeGreaterThan(0);
    expect(result.latencyUs.max).toBeGreaterThanOrEqual(result.latencyUs.p99);
  });

  test('pipelined echo completes requests', async () => {
    const result = await benchJson(['--connections', '2', '--pipeline', '8', '--requests', '800']);
    expect(result.ok).toBe(true);
    expect(result.requests).toBe(800);
    expect(result.errors).toEqual({});
  });

  test('bulk streams verified bytes', async () => {
    const result = await benchJson(['--mode', 'bulk', '--connections', '2', '--duration', '0.5']);
    expect(result.ok).toBe(true);
    expect(result.bytesReceived).toBe(result.bytesSent);
    expect(result.bytesReceived).toBeGreaterThan(0);
    expect(result.megabytesPerSecond).toBeGreaterThan(0);
  });

  test('handshake mode with resumption', async () => {
    const args = ['--mode', 'handshake', '--connections', '2', '--requests', '20', '--resume'];
    const result = await benchJson([...args, '--tls-version', '1.3']);
    expect(result.ok).toBe(true);
    expect(result.handshakes).toBe(20);
    expect(result.requests).toBe(20);
    expect(result.resumed).toBeGreaterThan(0);
  });

  test('handshake mode over TLS 1.2', async () => {
    const args = ['--mode', 'handshake', '--connections', '2', '--requests', '10'];
    const result = await benchJson([...args, '--tls-version', '1.2']);
    expect(result.ok).toBe(true);
    expect(result.handshakes).toBe(10);
  });

  test('checks the certificate with --ca', async () => {
    const output = await runBenchCommand([
      '--port',
      String(server.port),
      '--ca',
      caFile,
      '--servername',
      'localhost',
      '--requests',
      '10',
      '--connections',
      '1',
      '--json',
    ]);
    expect(output.code).toBe(0);
    expect((JSON.parse(output.stdout) as BenchResult).requests).toBe(10);
  });

  test('fails the handshake without --ca', async () => {
    const output = await runBenchCommand([
      '--port',
      String(server.port),
      '--requests',
      '4',
      '--connections',
      '1',
      '--json',
    ]);
    const result = JSON.parse(output.stdout) as BenchResult;
    expect(output.code).toBe(1);
    expect(result.errors.handshake).toBe(1);
  });

  test('prints a text summary', async () => {
    const output = await runBenchCommand([
      '--port',
      String(server.port),
      '--insecure',
      '--requests',
      '50',
      '--connections',
      '2',
    ]);
    expect(output.code).toBe(0);
    expect(output.stdout).toContain('requests    50');
    expect(output.stdout).toContain('latency us  p50');
    expect(output.stdout).toContain('result      ok');
    expect(output.stderr).toBe('');
  });

  test.each([
    [['--connections', 'x'], '--connections'],
    [['--mode', 'fast'], '--mode'],
    [['--tls-version', '1.1'], '--tls-version'],
    [['--scenario', 'nope'], '--scenario'],
    [['--duration', '1', '--requests', '3'], '--duration'],
  ])('exits 2 for %j', async (args, name) => {
    const output = await runBenchCommand(['--port', String(server.port), '--insecure', ...args]);
    expect(output.code).toBe(2);
    expect(output.stderr).toContain(name);
    expect(output.stderr.trim().split('\n')).toHaveLength(1);
  });
});

describe('shardtls bench against a corrupting server', () => {
  let server: EchoServer;

  beforeAll(async () => {
    server = await startEchoServer(3000);
  });

  afterAll(async () => {
    await server.close();
  });

  test('reports the mismatch offset and exits 1', async () => {
    const output = await runBenchCommand([
      '--port',
      String(server.port),
      '--insecure',
      '--connections',
      '1',
      '--requests',
      '10',
      '--json',
    ]);
    const result = JSON.parse(output.stdout) as BenchResult;
    expect(output.code).toBe(1);
    expect(result.ok).toBe(false);
    expect(result.errors.mismatch).toBe(1);
    expect(result.mismatches).toHaveLength(1);
    expect(result.mismatches[0]!.offset).toBe(3000);
    expect(result.mismatches[0]!.connection).toBe('0/0');
    expect(result.mismatches[0]!.actual).toBe(result.mismatches[0]!.expected ^ 0xff);
  });
});
