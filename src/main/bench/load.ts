import { MessageChannel } from 'node:worker_threads';
import * as hdr from 'hdr-histogram-js';
import { Piscina } from 'piscina';
import { newHistogram } from './client.js';
import type { ResolvedOptions } from './options.js';
import type {
  BenchMode,
  Counters,
  MismatchReport,
  ProgressMessage,
  WorkerResult,
  WorkerTask,
} from './types.js';
import { addCounters, emptyCounters } from './types.js';

/** Fewest milliseconds between two progress lines (at most 4 a second). */
const PROGRESS_INTERVAL_MS = 250;

/** What one load run does; scenarios override parts of the command's options. */
export interface LoadSpec {
  mode: BenchMode;
  connections: number;
  size: number;
  pipeline: number;
  durationMs: number;
  requests: number;
  bytesPerConnection: number;
}

/** Merged outcome of every task of a load run. */
export interface LoadResult {
  counters: Counters;
  errors: Record<string, number>;
  errorSamples: Record<string, string>;
  mismatches: MismatchReport[];
  histogram: hdr.Histogram;
  elapsedMs: number;
  threads: number;
}

/** Returns the load described by the command's own options. */
export function specOf(options: ResolvedOptions): LoadSpec {
  return {
    mode: options.mode,
    connections: options.connections,
    size: options.size,
    pipeline: options.pipeline,
    durationMs: options.durationMs,
    requests: options.requests,
    bytesPerConnection: 0,
  };
}

/** Splits `total` into `parts` shares that differ by at most one. */
function share(total: number, parts: number, index: number): number {
  return Math.floor(total / parts) + (index < total % parts ? 1 : 0);
}

/** Merges task results into one; histograms are decoded and added. */
export function mergeResults(results: WorkerResult[], elapsedMs: number): LoadResult {
  const merged: LoadResult = {
    counters: emptyCounters(),
    errors: {},
    errorSamples: {},
    mismatches: [],
    histogram: newHistogram(),
    elapsedMs,
    threads: results.length,
  };

  for (const result of results) {
    addCounters(merged.counters, result.counters);
    for (const [kind, count] of Object.entries(result.errors)) {
      merged.errors[kind] = (merged.errors[kind] ?? 0) + count;
      merged.errorSamples[kind] ??= result.errorSamples[kind]!;
    }
    merged.mismatches.push(...result.mismatches);
    merged.histogram.add(hdr.decodeFromCompressedBase64(result.histogram));
  }

  return merged;
}

/** Writes a progress line over the previous one on stderr. */
function writeProgress(latest: Map<number, ProgressMessage>, startedAt: number): void {
  const total = emptyCounters();
  let errors = 0;
  for (const message of latest.values()) {
    addCounters(total, message.counters);
    errors += message.errors;
  }

  const seconds = (Date.now() - startedAt) / 1000;
  const line =
    `${seconds.toFixed(1)} s  ${total.requests} requests ` +
    `(${(total.requests / seconds).toFixed(0)}/s)  ` +
    `${(total.bytesReceived / 1e6 / seconds).toFixed(1)} MB/s  ` +
    `${total.handshakes} handshakes  ${errors} errors`;
  process.stderr.write(`\r${line}\u001b[K`);
}

/**
 * Runs a load over a piscina pool of worker threads (dist/main/bench/worker.js).
 *
 * Each task drives its share of the connections and returns counters and a histogram, merged
 * here. Resolves when every task has finished; rejects only when a worker thread itself fails
 * (a worker that cannot load, for example), never for network errors, which are counted.
 */
export async function runLoad(options: ResolvedOptions, spec: LoadSpec): Promise<LoadResult> {
  const requestCap = spec.requests > 0 ? spec.requests : Infinity;
  const threads = Math.max(1, Math.min(options.threads, spec.connections, requestCap));
  const pool = new Piscina<WorkerTask, WorkerResult>({
    filename: new URL('./worker.js', import.meta.url).href,
    minThreads: threads,
    maxThreads: threads,
    idleTimeout: 1000,
  });

  const latest = new Map<number, ProgressMessage>();
  const startedAt = Date.now();
  const ticker = options.progress
    ? setInterval(() => writeProgress(latest, startedAt), PROGRESS_INTERVAL_MS)
    : undefined;
  const channels: MessageChannel[] = [];

  try {
    const tasks: Promise<WorkerResult>[] = [];
    for (let i = 0; i < threads; i++) {
      const channel = new MessageChannel();
      channels.push(channel);
      channel.port1.on('message', (message: ProgressMessage) => latest.set(i, message));

      const task: WorkerTask = {
        target: {
          host: options.host,
          port: options.port,
          servername: options.servername,
          ca: options.caPem,
          insecure: options.insecure,
          tlsVersion: options.tlsVersion,
        },
        workerIndex: i,
        seed: options.seed,
        mode: spec.mode,
        connections: share(spec.connections, threads, i),
        size: spec.size,
        pipeline: spec.pipeline,
        resume: options.resume,
        durationMs: spec.durationMs,
        requests: spec.requests === 0 ? 0 : share(spec.requests, threads, i),
        bytesPerConnection: spec.bytesPerConnection,
        deadlineMs: options.deadlineMs,
        idleTimeoutMs: options.idleTimeoutMs,
        progressPort: channel.port2,
      };
      tasks.push(pool.run(task, { transferList: [channel.port2] }));
    }

    const results = await Promise.all(tasks);
    return mergeResults(results, Date.now() - startedAt);
  } finally {
    clearInterval(ticker);
    if (ticker !== undefined) process.stderr.write('\r\u001b[K');
    for (const channel of channels) channel.port1.close();
    await pool.destroy();
  }
}
