/**
 * Shared parts of the side-by-side benchmarks (bench/transports.ts, bench/compare.ts): the
 * machine description, a self-signed certificate on disk, child servers started on loopback
 * ports and stopped by PID, the bench workloads and the median of alternated runs.
 *
 * The workloads run through `runBench` from dist/, whose client worker threads load compiled
 * JavaScript: run `npm run build` before any script here.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import selfsigned from 'selfsigned';

import type { BenchOptions, BenchResult } from '../src/main/bench-command.js';

/** The repository root, the working directory of every child server. */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/**
 * `runBench` from the compiled bench command. Its piscina workers load dist/main/bench/worker.js,
 * so the source under tsx cannot run them; the types come from src/ so typechecking needs no build.
 */
const { runBench } = (await import(
  new URL('../dist/main/bench-command.js', import.meta.url).href
)) as typeof import('../src/main/bench-command.js');

/** Milliseconds a child server may take to print its port. */
const START_TIMEOUT_MS = 20_000;

/** Milliseconds a child server may take to exit after SIGTERM before it gets SIGKILL. */
const STOP_TIMEOUT_MS = 5_000;

/** Reads a numeric `--name value` flag of this process, or returns `fallback`. */
export function numberFlag(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  if (at < 0) return fallback;

  const value = Number(process.argv[at + 1]);
  if (!Number.isFinite(value) || value <= 0) {
    throw new Error(`invalid --${name} ${process.argv[at + 1]}: expected a positive number`);
  }
  return value;
}

/** The machine a run was measured on, printed above every table. */
export interface MachineInfo {
  cpuModel: string;
  cores: number;
  memoryGiB: number;
  node: string;
  openssl: string;
  /** Load averages over 1, 5 and 15 minutes, read before the first run. */
  loadAverage: number[];
  date: string;
}

/** Describes this machine from /proc/cpuinfo, `os` and `process.versions`. */
export function machineInfo(): MachineInfo {
  const cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  const model = /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model ?? 'unknown';

  return {
    cpuModel: model.trim(),
    cores: os.availableParallelism(),
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    openssl: process.versions.openssl ?? 'unknown',
    loadAverage: os.loadavg().map((value) => Math.round(value * 100) / 100),
    date: new Date().toISOString(),
  };
}

/** Prints the command line and the machine, as the header of a benchmark's output. */
export function printHeader(command: string, machine: MachineInfo): void {
  console.log(`command: ${command}`);
  console.log(`date: ${machine.date}`);
  console.log(
    `machine: ${machine.cpuModel}, ${machine.cores} cores, ${machine.memoryGiB} GiB memory`,
  );
  console.log(`node: ${machine.node}, OpenSSL ${machine.openssl}`);
  console.log(`load average before the run (1, 5, 15 min): ${machine.loadAverage.join(', ')}`);
}

/** PEM files of one self-signed ECDSA certificate for localhost, in a temp directory. */
export interface CertificateFiles {
  dir: string;
  cert: string;
  key: string;
  /** Certificate followed by key, the single file that haproxy and hitch read. */
  combined: string;
  remove(): void;
}

/** Writes a self-signed certificate for localhost and 127.0.0.1 into a new temp directory. */
export async function writeCertificate(): Promise<CertificateFiles> {
  const pems = await selfsigned.generate([{ name: 'commonName', value: 'localhost' }], {
    notAfterDate: new Date(Date.now() + 86_400_000),
    keyType: 'ec',
    extensions: [
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
        ],
      },
    ],
  });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'shardtls-bench-'));
  const files = {
    dir,
    cert: path.join(dir, 'cert.pem'),
    key: path.join(dir, 'key.pem'),
    combined: path.join(dir, 'combined.pem'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
  writeFileSync(files.cert, pems.cert);
  writeFileSync(files.key, pems.private, { mode: 0o600 });
  // PEM blocks must start on their own line, and the generated PEM may lack a final newline.
  const combined = `${pems.cert.trimEnd()}\n${pems.private.trimEnd()}\n`;
  writeFileSync(files.combined, combined, { mode: 0o600 });
  return files;
}

/** A server process started by a benchmark. */
export interface ChildServer {
  name: string;
  pid: number;
  port: number;
  /** Sends SIGTERM, then SIGKILL after STOP_TIMEOUT_MS; resolves when the process has exited. */
  stop(): Promise<void>;
}

const children = new Set<ChildProcess>();

/** Sends SIGKILL to every child server still running, by PID; for exit paths that cannot wait. */
export function killChildren(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      process.kill(child.pid, 'SIGKILL');
    }
  }
}

let handlersInstalled = false;

/** Kills every child server by PID when this process is interrupted or exits. */
function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;

  process.on('exit', killChildren);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      console.error(`\n${signal}: stopping the child servers`);
      killChildren();
      process.exit(130);
    });
  }
}

/** Parser that finds a child server's port in one line of its output. */
export type PortReader = (line: string) => number | undefined;

/** Reads `port` from a JSON log line whose `msg` is "listening" (shardtls serve, bench/servers). */
export const jsonListeningPort: PortReader = (line) => {
  if (!line.startsWith('{')) return undefined;
  try {
    const record = JSON.parse(line) as { msg?: unknown; port?: unknown };
    return record.msg === 'listening' && typeof record.port === 'number' ? record.port : undefined;
  } catch {
    return undefined;
  }
};

/**
 * Starts a server process and waits until `readPort` finds its port in a line of its output, or,
 * with `fixedPort`, until that loopback port accepts a TCP connection.
 *
 * Resolves with the running server. Rejects when the process exits first or no port appears
 * within START_TIMEOUT_MS, with the last lines of its output; the process is killed then.
 */
export async function startServer(
  name: string,
  command: string,
  args: string[],
  ready: { readPort: PortReader } | { fixedPort: number },
): Promise<ChildServer> {
  installExitHandlers();
  const child = spawn(command, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.on('exit', () => children.delete(child));

  let output = '';
  const port = await new Promise<number>((resolve, reject) => {
    const fail = (reason: string): void => {
      clearTimeout(timer);
      clearInterval(poll);
      if (child.pid !== undefined && child.exitCode === null) child.kill('SIGKILL');
      reject(new Error(`${name} (${command}) ${reason}; output:\n${output.slice(-2000)}`));
    };
    const timer = setTimeout(() => fail('printed no port in time'), START_TIMEOUT_MS);
    const poll =
      'fixedPort' in ready
        ? setInterval(() => {
            probe(ready.fixedPort).then((open) => {
              if (!open) return;
              clearTimeout(timer);
              clearInterval(poll);
              resolve(ready.fixedPort);
            }, fail);
          }, 100)
        : undefined;

    const onData = (chunk: Buffer): void => {
      output = (output + chunk.toString()).slice(-8000);
      if (!('readPort' in ready)) return;
      for (const line of output.split('\n')) {
        const found = ready.readPort(line.trim());
        if (found === undefined) continue;
        clearTimeout(timer);
        resolve(found);
        return;
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('error', (error) => fail(`failed to start: ${error.message}`));
    child.on('exit', (code, signal) => fail(`exited early with ${code ?? signal}`));
  });

  // The data listeners stay, so later output is still read (only its last 8000 characters are
  // kept) and a chatty server never blocks on a full pipe.
  child.removeAllListeners('exit');
  child.on('exit', () => children.delete(child));

  return {
    name,
    pid: child.pid!,
    port,
    stop: () => stopChild(child),
  };
}

/** Resolves true when a TCP connection to 127.0.0.1:port succeeds. */
function probe(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) {
    return Promise.resolve();
  }

  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** Options of a `shardtls serve` child. */
export interface ServeOptions {
  transport: 'direct' | 'relay';
  shards: number;
  cert: CertificateFiles;
  handler?: 'echo' | 'proxy';
  backend?: string;
}

/** Starts `node dist/main/cli.js serve` on a free loopback port. */
export function startServe(options: ServeOptions): Promise<ChildServer> {
  const args = [
    'dist/main/cli.js',
    'serve',
    '--host',
    '127.0.0.1',
    '--port',
    '0',
    '--transport',
    options.transport,
    '--shards',
    String(options.shards),
    '--cert',
    options.cert.cert,
    '--key',
    options.cert.key,
    '--handler',
    options.handler ?? 'echo',
    '--drain-timeout',
    '1000',
    '--log-level',
    'info',
  ];
  if (options.backend !== undefined) args.push('--backend', options.backend);

  const name = `shardtls ${options.transport} ${options.shards} shard(s)`;
  return startServer(name, process.execPath, args, { readPort: jsonListeningPort });
}

/** A bench workload: what one client run sends. */
export interface Workload {
  name: string;
  options: Omit<BenchOptions, 'port'>;
}

/** Returns the two workloads of both benchmarks: 64-byte ping-pong and 16 KiB bulk streams. */
export function workloads(seconds: number, clientThreads: number): Workload[] {
  const common = { insecure: true, duration: seconds, threads: clientThreads, progress: false };
  return [
    {
      name: 'ping-pong 64 B',
      options: { ...common, mode: 'echo', size: 64, pipeline: 1, connections: 16 },
    },
    {
      name: 'bulk 16 KiB',
      options: { ...common, mode: 'bulk', size: 16_384, pipeline: 16, connections: 4 },
    },
  ];
}

/** The figures of one bench run that the tables print. */
export interface Sample {
  requestsPerSecond: number;
  p99Us: number;
  megabytesPerSecond: number;
}

/** Runs one workload against a port; throws when the run failed (a mismatch or an error). */
export async function measure(workload: Workload, port: number): Promise<Sample> {
  const result: BenchResult = await runBench({ ...workload.options, port });
  if (!result.ok) {
    throw new Error(`${workload.name} on port ${port} failed: ${result.failures.join('; ')}`);
  }
  return {
    requestsPerSecond: result.requestsPerSecond,
    p99Us: result.latencyUs.p99,
    megabytesPerSecond: result.megabytesPerSecond,
  };
}

/** Returns the median of a non-empty list (the mean of the middle two for an even count). */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Formats the lowest and highest of a non-empty list, e.g. `19000-24000`. */
export function range(values: number[], digits = 0): string {
  return `${Math.min(...values).toFixed(digits)}-${Math.max(...values).toFixed(digits)}`;
}

/** Formats a figure and its ratio to a baseline, e.g. `21034 (1.00)`. */
export function withRatio(value: number, baseline: number, digits = 0): string {
  const ratio = baseline > 0 ? (value / baseline).toFixed(2) : 'n/a';
  return `${value.toFixed(digits)} (${ratio})`;
}

/** Prints a Markdown table whose first row is the header. */
export function printTable(rows: string[][]): void {
  const widths = rows[0]!.map((_, column) =>
    Math.max(...rows.map((row) => (row[column] ?? '').length)),
  );
  const line = (row: string[]): string =>
    `| ${row.map((cell, column) => cell.padEnd(widths[column]!)).join(' | ')} |`;

  console.log(line(rows[0]!));
  console.log(`| ${widths.map((width) => '-'.repeat(width)).join(' | ')} |`);
  for (const row of rows.slice(1)) console.log(line(row));
}

/** Returns the path of a program on PATH, or undefined when it is not installed. */
export function which(program: string): string | undefined {
  try {
    return execFileSync('which', [program], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}
