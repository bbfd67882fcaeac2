import type { MessagePort } from 'node:worker_threads';

/** How each connection uses the server: see `--mode` in the bench command's help. */
export type BenchMode = 'echo' | 'bulk' | 'handshake' | 'half-close';

/** Connection settings shared by every client of a run. */
export interface ClientTarget {
  host: string;
  port: number;
  /** SNI name and the name checked in the server's certificate; defaults to the host. */
  servername?: string;
  /** PEM text of the CA that signed the server's certificate. */
  ca?: string;
  /** Skip certificate checks (for self-signed test servers). */
  insecure: boolean;
  tlsVersion?: '1.2' | '1.3';
}

/** One piscina task: a worker's share of the connections of a run. */
export interface WorkerTask {
  target: ClientTarget;
  workerIndex: number;
  /** Seed of the run; each worker and connection derives its payload from it. */
  seed: number;
  mode: BenchMode;
  /** Connections this worker keeps open at once. */
  connections: number;
  /** Message size in bytes (one request, one bulk chunk, or one handshake-mode exchange). */
  size: number;
  /** Messages in flight per connection. */
  pipeline: number;
  resume: boolean;
  /** Run length in milliseconds when `requests` is 0. */
  durationMs: number;
  /** Requests this worker issues in all; 0 means run for `durationMs`. */
  requests: number;
  /** Bytes each connection sends before it stops; 0 means no limit. */
  bytesPerConnection: number;
  /** Hard limit on the whole task, after which every open connection is destroyed. */
  deadlineMs: number;
  /** A connection with no progress for this long fails with the `timeout` kind. */
  idleTimeoutMs: number;
  /** Port on which the worker posts `ProgressMessage`s, about every 250 ms. */
  progressPort?: MessagePort;
}

/** Counters of a run or a part of it. */
export interface Counters {
  requests: number;
  bytesSent: number;
  bytesReceived: number;
  handshakes: number;
  resumed: number;
  connectionsOpened: number;
  connectionsCompleted: number;
}

/** A wrong echoed byte, reported with its connection and stream offset. */
export interface MismatchReport {
  /** Connection id, `worker/index`. */
  connection: string;
  offset: number;
  expected: number;
  actual: number;
}

/** Result of one piscina task. */
export interface WorkerResult {
  counters: Counters;
  /** Error counts by kind (`connect`, `handshake`, `reset`, `eof`, `timeout`, `mismatch`, ...). */
  errors: Record<string, number>;
  /** First error message seen for each kind. */
  errorSamples: Record<string, string>;
  mismatches: MismatchReport[];
  /** Latency histogram in microseconds, as hdr-histogram-js compressed base64. */
  histogram: string;
  elapsedMs: number;
}

/** Progress posted by a worker: its counters so far. */
export interface ProgressMessage {
  workerIndex: number;
  counters: Counters;
  errors: number;
}

/** Returns a zeroed `Counters`. */
export function emptyCounters(): Counters {
  return {
    requests: 0,
    bytesSent: 0,
    bytesReceived: 0,
    handshakes: 0,
    resumed: 0,
    connectionsOpened: 0,
    connectionsCompleted: 0,
  };
}

/** Adds every field of `from` into `into`. */
export function addCounters(into: Counters, from: Counters): void {
  into.requests += from.requests;
  into.bytesSent += from.bytesSent;
  into.bytesReceived += from.bytesReceived;
  into.handshakes += from.handshakes;
  into.resumed += from.resumed;
  into.connectionsOpened += from.connectionsOpened;
  into.connectionsCompleted += from.connectionsCompleted;
}
