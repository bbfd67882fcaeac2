import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { BenchResult } from '../src/main/bench/run.js';
import { SCENARIO_NAMES } from '../src/main/bench/options.js';
import type { EchoServer } from './bench-helpers.js';
import { runBenchCommand, startEchoServer } from './bench-helpers.js';

/** Runs a scenario briefly and parses its JSON result. */
async function scenario(port: number, name: string, extra: string[] = []) {
  const output = await runBenchCommand([
    '--port',
    String(port),
    '--insecure',
    '--scenario',
    name,
    '--connections',
    '4',
    '--threads',
    '2',
    '--duration',
    '0.5',
    '--idle-timeout',
    '3',
    '--json',
    ...extra,
  ]);
  return {
    code: output.code,
    stderr: output.stderr,
    result: JSON.parse(output.stdout) as BenchResult,
  };
}

describe('bench scenarios against a Node tls echo server', () => {
  let server: EchoServer;

  beforeAll(async () => {
    server = await startEchoServer();
  });

  afterAll(async () => {
    await server.close();
  });

  test.each(SCENARIO_NAMES)('%s holds its invariant', async (name) => {
    const { code, result } = await scenario(server.port, name);
    expect(result.failures).toEqual([]);
    expect(result.ok).toBe(true);
    expect(code).toBe(0);
    expect(result.scenario).toBe(name);
    expect(result.invariant!.length).toBeGreaterThan(20);
    expect(result.requests).toBeGreaterThan(0);
  });

  test('slow-reader reads server RSS from stats', async () => {
    const stats = http.createServer((_request, response) => {
      response.setHeader('content-type', 'application/json');
      response.end(JSON.stringify({ memory: { rss: process.memoryUsage().rss } }));
    });
    await new Promise<void>((resolve) => stats.listen(0, '127.0.0.1', resolve));
    const statsPort = (stats.address() as net.AddressInfo).port;

    try {
      const url = `http://127.0.0.1:${statsPort}/stats`;
      const { code, result } = await scenario(server.port, 'slow-reader', ['--stats-url', url]);
      expect(result.failures).toEqual([]);
      expect(code).toBe(0);
      const rss = result.details.serverRss as { baseline: number; after: number; bound: number };
      expect(rss.baseline).toBeGreaterThan(0);
      expect(rss.bound).toBe(rss.baseline + 256 * 1048576);
    } finally {
      await new Promise<void>((resolve) => stats.close(() => resolve()));
    }
  });

  test('big-bulk receives every byte', async () => {
    const { result } = await scenario(server.port, 'big-bulk');
    expect(result.bytesReceived).toBe(4 * 32 * 1024 * 1024);
  });

  test('help lists every invariant', async () => {
    const output = await runBenchCommand(['--help']);
    for (const name of SCENARIO_NAMES) expect(output.stdout).toContain(`  ${name}: `);
  });
});

describe('bench scenarios that must break', () => {
  test('big-bulk names a corrupted byte', async () => {
    const server = await startEchoServer(1_000_000);
    try {
      const { code, result } = await scenario(server.port, 'big-bulk');
      expect(code).toBe(1);
      expect(result.ok).toBe(false);
      expect(result.mismatches[0]!.offset).toBe(1_000_000);
      expect(result.failures.join('\n')).toContain('mismatch');
    } finally {
      await server.close();
    }
  });

  test('garbage names connections left open', async () => {
    // A plain TCP server that reads and never closes: no TLS server behaves this way.
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((socket) => {
      sockets.add(socket);
      socket.resume();
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as net.AddressInfo).port;

    try {
      const { code, result } = await scenario(port, 'garbage', ['--idle-timeout', '1']);
      expect(code).toBe(1);
      expect(result.failures.join('\n')).toContain('garbage connection(s) were still open');
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });

  test('slow-reader fails when the stats endpoint has no memory', async () => {
    const server = await startEchoServer();
    const output = await runBenchCommand([
      '--port',
      String(server.port),
      '--insecure',
      '--scenario',
      'slow-reader',
      '--stats-url',
      `http://127.0.0.1:${server.port}/`,
      '--duration',
      '0.5',
    ]);
    await server.close();
    expect(output.code).toBe(1);
    expect(output.stderr).toContain('stats endpoint');
  });
});
