/**
 * TLS-terminating proxies for bench/compare.ts: haproxy and hitch started from configs generated
 * into a temp directory, and wrk as the HTTPS load client. Every process listens on loopback
 * only and is stopped by PID through `ChildServer.stop`.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

import type { CertificateFiles, ChildServer } from './support.js';
import { startServer } from './support.js';

/** Returns a loopback port that was free a moment ago, for servers that cannot take port 0. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/**
 * Starts haproxy with `threads` threads, terminating TLS on a loopback port and forwarding the
 * plaintext bytes of each connection to the backend in TCP mode, as shardtls' proxy handler
 * and hitch do.
 */
export async function startHaproxy(
  haproxy: string,
  cert: CertificateFiles,
  backendPort: number,
  threads: number,
): Promise<ChildServer> {
  const port = await freePort();
  const config = path.join(cert.dir, 'haproxy.cfg');
  writeFileSync(
    config,
    [
      'global',
      `  nbthread ${threads}`,
      '  maxconn 4096',
      'defaults',
      '  mode tcp',
      '  timeout connect 5s',
      '  timeout client 60s',
      '  timeout server 60s',
      'frontend tls_in',
      `  bind 127.0.0.1:${port} ssl crt ${cert.combined}`,
      '  default_backend plain_out',
      'backend plain_out',
      `  server backend1 127.0.0.1:${backendPort}`,
      '',
    ].join('\n'),
  );

  // -db keeps haproxy in the foreground, so its PID is the one that SIGTERM stops.
  const name = `haproxy ${threads} thread(s)`;
  return startServer(name, haproxy, ['-db', '-f', config], { fixedPort: port });
}

/** Starts hitch with `workers` worker processes in front of the backend. */
export async function startHitch(
  hitch: string,
  cert: CertificateFiles,
  backendPort: number,
  workers: number,
): Promise<ChildServer> {
  const port = await freePort();
  const config = path.join(cert.dir, 'hitch.conf');
  writeFileSync(
    config,
    [
      `frontend = "[127.0.0.1]:${port}"`,
      `backend = "[127.0.0.1]:${backendPort}"`,
      `pem-file = "${cert.combined}"`,
      `workers = ${workers}`,
      'daemon = off',
      `ocsp-dir = "${cert.dir}"`,
      // hitch refuses to run its workers as root; they drop to nobody after loading the PEM.
      ...(process.getuid?.() === 0 ? ['user = "nobody"', 'group = "nogroup"'] : []),
      '',
    ].join('\n'),
  );

  // Without --daemon the master process stays in the foreground and stops its workers on SIGTERM.
  const name = `hitch ${workers} worker(s)`;
  return startServer(name, hitch, ['--config', config], { fixedPort: port });
}

/** Figures of one wrk run. */
export interface WrkSample {
  requestsPerSecond: number;
  p50Us: number;
  p99Us: number;
  /** Socket errors and non-2xx responses; a run with any is reported, not used. */
  errors: number;
}

/** Converts a wrk latency such as `1.23ms`, `850.00us` or `1.02s` to microseconds. */
export function wrkLatencyUs(text: string): number {
  const match = /^([\d.]+)(us|ms|s)$/.exec(text.trim());
  if (match === null) throw new Error(`invalid wrk latency '${text}': expected a number and unit`);

  let scale = 1_000_000;
  if (match[2] === 'ms') scale = 1000;
  if (match[2] === 'us') scale = 1;
  return Math.round(Number(match[1]) * scale);
}

/** Reads requests/s, the p50 and p99 latency and the error count from wrk's `--latency` output. */
export function parseWrk(output: string): WrkSample {
  const rate = /^Requests\/sec:\s*([\d.]+)/m.exec(output);
  const p50 = /^\s*50%\s+(\S+)/m.exec(output);
  const p99 = /^\s*99%\s+(\S+)/m.exec(output);
  if (rate === null || p50 === null || p99 === null) {
    throw new Error(`wrk output has no Requests/sec or latency distribution:\n${output}`);
  }

  let errors = 0;
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(
    output,
  );
  if (socket !== null) errors += socket.slice(1).reduce((sum, count) => sum + Number(count), 0);
  const status = /Non-2xx or 3xx responses: (\d+)/.exec(output);
  if (status !== null) errors += Number(status[1]);

  return {
    requestsPerSecond: Number(rate[1]),
    p50Us: wrkLatencyUs(p50[1]!),
    p99Us: wrkLatencyUs(p99[1]!),
    errors,
  };
}

/** Settings of a wrk run. */
export interface WrkLoad {
  threads: number;
  connections: number;
  seconds: number;
}

/**
 * Runs wrk against `url` for `load.seconds`, killed after 30 s more.
 *
 * Resolves with its figures. Rejects when wrk fails, is killed, or prints no figures.
 */
export function runWrk(wrk: string, url: string, load: WrkLoad): Promise<WrkSample> {
  const args = [
    `-t${load.threads}`,
    `-c${load.connections}`,
    `-d${load.seconds}s`,
    '--latency',
    '--timeout',
    '10s',
    url,
  ];

  return new Promise((resolve, reject) => {
    const options = { timeout: (load.seconds + 30) * 1000, killSignal: 'SIGKILL' as const };
    execFile(wrk, args, options, (error, stdout, stderr) => {
      if (error !== null) {
        reject(new Error(`wrk ${args.join(' ')} failed: ${error.message}\n${stderr}`));
        return;
      }
      try {
        resolve(parseWrk(stdout));
      } catch (parseError) {
        reject(parseError as Error);
      }
    });
  });
}
