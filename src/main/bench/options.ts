import { readFileSync } from 'node:fs';
import os from 'node:os';
import type { BenchMode } from './types.js';

/** Names of the stress scenarios that `--scenario` accepts. */
export const SCENARIO_NAMES = [
  'slow-reader',
  'abrupt-close',
  'half-close',
  'handshake-storm',
  'key-update',
  'garbage',
  'big-bulk',
] as const;

/** A scenario name. */
export type ScenarioName = (typeof SCENARIO_NAMES)[number];

/** Options of `runBench`, as a caller passes them; every field but `port` has a default. */
export interface BenchOptions {
  /** Server host; default 127.0.0.1. */
  host?: string;
  port: number;
  /** SNI name and the name checked in the server's certificate. */
  servername?: string;
  /** Path of a PEM file with the CA that signed the server's certificate. */
  ca?: string;
  /** Skip certificate checks; exclusive with `ca`. */
  insecure?: boolean;
  /** Concurrent connections; default 16. */
  connections?: number;
  /** Message size in bytes; default 1024 (16384 in bulk mode). */
  size?: number;
  /** Messages in flight per connection; default 1 (16 in bulk mode). */
  pipeline?: number;
  /** Run length in seconds when `requests` is not set; default 10. */
  duration?: number;
  /** Total requests of the run, instead of a duration. */
  requests?: number;
  mode?: Exclude<BenchMode, 'half-close'>;
  tlsVersion?: '1.2' | '1.3';
  /** Resume TLS sessions on reconnect (handshake mode); default false. */
  resume?: boolean;
  /** Client worker threads; default the number of cores. */
  threads?: number;
  scenario?: ScenarioName;
  /** URL of the server's stats endpoint (JSON with `memory.rss`), read by `slow-reader`. */
  statsUrl?: string;
  /** Allowed growth of the server's RSS during `slow-reader`, in MiB; default 256. */
  maxRssGrowth?: number;
  /** Hard limit on the whole run in seconds; default duration + 60, or 300 with `requests`. */
  timeout?: number;
  /** A connection with no progress for this many seconds fails; default 10. */
  idleTimeout?: number;
  /** Payload seed; default random. The same seed sends the same bytes. */
  seed?: number;
  /** Print a progress line to stderr; default when stderr is a terminal. */
  progress?: boolean;
}

/** Options with every default filled in and every value checked. */
export interface ResolvedOptions {
  host: string;
  port: number;
  servername?: string;
  caPem?: string;
  insecure: boolean;
  connections: number;
  size: number;
  pipeline: number;
  durationMs: number;
  requests: number;
  mode: Exclude<BenchMode, 'half-close'>;
  tlsVersion?: '1.2' | '1.3';
  resume: boolean;
  threads: number;
  scenario?: ScenarioName;
  statsUrl?: string;
  maxRssGrowthBytes: number;
  deadlineMs: number;
  idleTimeoutMs: number;
  seed: number;
  progress: boolean;
}

/** An invalid option value; the command prints its message on one line and exits with 2. */
export class BenchUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BenchUsageError';
  }
}

function integer(name: string, value: unknown, min: number, max: number): number {
  const number = typeof value === 'string' ? Number(value.trim()) : value;
  if (typeof number !== 'number' || !Number.isInteger(number) || number < min || number > max) {
    throw new BenchUsageError(
      `invalid --${name} ${String(value)}: expected an integer from ${min} to ${max}`,
    );
  }
  return number;
}

function seconds(name: string, value: unknown, max: number): number {
  const number = typeof value === 'string' ? Number(value.trim()) : value;
  if (typeof number !== 'number' || !Number.isFinite(number) || number <= 0 || number > max) {
    throw new BenchUsageError(
      `invalid --${name} ${String(value)}: expected seconds above 0, at most ${max}`,
    );
  }
  return number;
}

function oneOf<T extends string>(name: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw new BenchUsageError(
      `invalid --${name} ${String(value)}: expected one of ${allowed.join(', ')}`,
    );
  }
  return value as T;
}

/**
 * Checks bench options and fills in the defaults.
 *
 * Returns the resolved options. Throws `BenchUsageError` naming the option for a value out of
 * range, an unknown mode, TLS version or scenario, `--duration` together with `--requests`,
 * `--ca` together with `--insecure`, an unreadable CA file or a stats URL that is not http(s).
 */
export function resolveOptions(options: BenchOptions): ResolvedOptions {
  const mode = oneOf('mode', options.mode ?? 'echo', ['echo', 'bulk', 'handshake'] as const);
  const bulk = mode === 'bulk';

  if (options.duration !== undefined && options.requests !== undefined) {
    throw new BenchUsageError('--duration and --requests exclude each other: give one of them');
  }
  if (options.ca !== undefined && options.insecure === true) {
    throw new BenchUsageError('--ca and --insecure exclude each other: give one of them');
  }

  const durationMs = seconds('duration', options.duration ?? 10, 86_400) * 1000;
  const requests =
    options.requests === undefined ? 0 : integer('requests', options.requests, 1, 1e12);

  let caPem: string | undefined;
  if (options.ca !== undefined) {
    try {
      caPem = readFileSync(options.ca, 'utf8');
    } catch (error) {
      throw new BenchUsageError(`cannot read --ca ${options.ca}: ${(error as Error).message}`);
    }
  }

  let statsUrl: string | undefined;
  if (options.statsUrl !== undefined) {
    const url = URL.canParse(options.statsUrl) ? new URL(options.statsUrl) : undefined;
    if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
      throw new BenchUsageError(`invalid --stats-url ${options.statsUrl}: expected an http(s) URL`);
    }
    statsUrl = url.href;
  }

  const timeoutDefault = requests > 0 ? 300 : durationMs / 1000 + 60;
  const host = options.host ?? '127.0.0.1';
  if (host.length === 0)
    throw new BenchUsageError('invalid --host: expected a host name or address');

  return {
    host,
    port: integer('port', options.port, 1, 65_535),
    servername: options.servername,
    caPem,
    insecure: options.insecure ?? false,
    connections: integer('connections', options.connections ?? 16, 1, 100_000),
    size: integer('size', options.size ?? (bulk ? 16_384 : 1024), 1, 1 << 30),
    pipeline: integer('pipeline', options.pipeline ?? (bulk ? 16 : 1), 1, 4096),
    durationMs,
    requests,
    mode,
    tlsVersion:
      options.tlsVersion === undefined
        ? undefined
        : oneOf('tls-version', options.tlsVersion, ['1.2', '1.3'] as const),
    resume: options.resume ?? false,
    threads: integer('threads', options.threads ?? os.availableParallelism(), 1, 1024),
    scenario:
      options.scenario === undefined
        ? undefined
        : oneOf('scenario', options.scenario, SCENARIO_NAMES),
    statsUrl,
    maxRssGrowthBytes: integer('max-rss-growth', options.maxRssGrowth ?? 256, 1, 1 << 20) * 1048576,
    deadlineMs: seconds('timeout', options.timeout ?? timeoutDefault, 86_400 * 2) * 1000,
    idleTimeoutMs: seconds('idle-timeout', options.idleTimeout ?? 10, 3600) * 1000,
    seed: integer('seed', options.seed ?? Math.floor(Math.random() * 0xffffffff), 0, 0xffffffff),
    progress: options.progress ?? process.stderr.isTTY === true,
  };
}
