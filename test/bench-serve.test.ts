import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { BenchResult } from '../src/main/bench/run.js';
import { SCENARIO_NAMES } from '../src/main/bench/options.js';
import { runBenchCommand } from './bench-helpers.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** Milliseconds serve may take to log both its TLS port and its stats port. */
const START_TIMEOUT_MS = 20_000;

/** A `shardtls serve` child process on loopback ports. */
interface Serve {
  child: ChildProcess;
  port: number;
  statsPort: number;
  /** Every line that serve wrote, for the failure messages. */
  output: () => string;
}

/**
 * Starts `node dist/main/cli.js serve --port 0 --stats-port 0` and resolves once it has logged
 * the TLS port ("listening") and the stats endpoint's address.
 */
function startServe(transport: 'direct' | 'relay'): Promise<Serve> {
  const args = [
    'dist/main/cli.js',
    'serve',
    '--port',
    '0',
    '--stats-port',
    '0',
    '--shards',
    '2',
    '--transport',
    transport,
    '--drain-timeout',
    '1000',
  ];
  const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';

  return new Promise((resolve, reject) => {
    let port: number | undefined;
    let statsPort: number | undefined;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`serve logged no listening port in time; output:\n${output}`));
    }, START_TIMEOUT_MS);

    const onLine = (line: string): void => {
      if (!line.startsWith('{')) return;
      const record = JSON.parse(line) as { msg?: string; port?: number; address?: string };
      if (record.msg === 'listening') port = record.port;
      if (record.msg === 'stats endpoint listening') {
        statsPort = Number(/:(\d+)$/.exec(record.address ?? '')?.[1]);
      }
      if (port !== undefined && statsPort !== undefined) {
        clearTimeout(timer);
        resolve({ child, port, statsPort, output: () => output });
      }
    };

    let pending = '';
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      pending += chunk.toString();
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) onLine(line.trim());
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`serve exited with ${code ?? signal} before listening:\n${output}`));
    });
  });
}

/** Stops serve with SIGTERM (SIGKILL after 10 s) and resolves with its exit code. */
function stopServe(serve: Serve): Promise<number | null> {
  const { child } = serve;
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);

  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
    child.kill('SIGTERM');
  });
}

describe.each(['direct', 'relay'] as const)('bench scenarios against shardtls serve %s', (t) => {
  let serve: Serve;

  beforeAll(async () => {
    serve = await startServe(t);
  });

  afterAll(async () => {
    if (serve !== undefined) expect(await stopServe(serve)).toBe(0);
  });

  test.each(SCENARIO_NAMES)('%s holds its invariant', async (name) => {
    const args = [
      '--port',
      String(serve.port),
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
      '--timeout',
      '20',
      '--json',
    ];
    if (name === 'slow-reader') {
      args.push('--stats-url', `http://127.0.0.1:${serve.statsPort}/stats`);
    }

    const output = await runBenchCommand(args, 30_000);
    const failure = `stderr:\n${output.stderr}\nserve output:\n${serve.output().slice(-4000)}`;
    expect(output.stdout, failure).not.toBe('');
    const result = JSON.parse(output.stdout) as BenchResult;

    expect(result.failures, failure).toEqual([]);
    expect(result.mismatches).toEqual([]);
    expect(result.ok).toBe(true);
    expect(output.code).toBe(0);
    expect(result.requests).toBeGreaterThan(0);
    expect(serve.child.exitCode, 'serve exited during the scenario').toBeNull();

    if (name === 'slow-reader') {
      const rss = result.details.serverRss as { baseline: number; after: number; bound: number };
      expect(rss.baseline).toBeGreaterThan(0);
      expect(rss.after).toBeLessThanOrEqual(rss.bound);
    }
    if (name === 'big-bulk') {
      expect(result.bytesReceived).toBe(4 * 32 * 1024 * 1024);
    }
  });
});
