import type { LoadResult } from './load.js';
import { runLoad, specOf } from './load.js';
import type { BenchOptions, ResolvedOptions } from './options.js';
import { resolveOptions } from './options.js';
import { SCENARIOS } from './scenarios.js';
import type { MismatchReport } from './types.js';

/** Latency percentiles in microseconds. */
export interface LatencySummary {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

/** Outcome of `runBench`; `--json` prints it as one object. */
export interface BenchResult {
  /** True when every echoed byte matched, no error occurred and the scenario invariant held. */
  ok: boolean;
  /** Each reason the run failed, in one sentence. */
  failures: string[];
  target: string;
  mode: string;
  scenario?: string;
  invariant?: string;
  connections: number;
  threads: number;
  seconds: number;
  requests: number;
  requestsPerSecond: number;
  bytesSent: number;
  bytesReceived: number;
  /** Echoed bytes received per second, in MB (10^6 bytes). */
  megabytesPerSecond: number;
  handshakes: number;
  handshakesPerSecond: number;
  resumed: number;
  latencyUs: LatencySummary;
  errors: Record<string, number>;
  errorSamples: Record<string, string>;
  mismatches: MismatchReport[];
  details: Record<string, unknown>;
}

/** Builds the result of a run from its load and the failures found. */
function toResult(
  options: ResolvedOptions,
  load: LoadResult | undefined,
  failures: string[],
  details: Record<string, unknown>,
): BenchResult {
  const seconds = load === undefined ? 0 : Math.max(load.elapsedMs, 1) / 1000;
  const histogram = load?.histogram;
  const at = (percentile: number): number => histogram?.getValueAtPercentile(percentile) ?? 0;
  const counters = load?.counters;

  return {
    ok: failures.length === 0,
    failures,
    target: `${options.host}:${options.port}`,
    mode: options.mode,
    scenario: options.scenario,
    invariant: options.scenario === undefined ? undefined : SCENARIOS[options.scenario].invariant,
    connections: counters?.connectionsOpened ?? 0,
    threads: load?.threads ?? 0,
    seconds,
    requests: counters?.requests ?? 0,
    requestsPerSecond: (counters?.requests ?? 0) / seconds || 0,
    bytesSent: counters?.bytesSent ?? 0,
    bytesReceived: counters?.bytesReceived ?? 0,
    megabytesPerSecond: (counters?.bytesReceived ?? 0) / 1e6 / seconds || 0,
    handshakes: counters?.handshakes ?? 0,
    handshakesPerSecond: (counters?.handshakes ?? 0) / seconds || 0,
    resumed: counters?.resumed ?? 0,
    latencyUs: {
      p50: at(50),
      p90: at(90),
      p99: at(99),
      p999: at(99.9),
      max: histogram?.maxValue ?? 0,
      mean: Math.round(histogram?.mean ?? 0),
    },
    errors: load?.errors ?? {},
    errorSamples: load?.errorSamples ?? {},
    mismatches: load?.mismatches ?? [],
    details,
  };
}

/**
 * Runs a bench: the plain load of `options.mode`, or the scenario of `options.scenario`.
 *
 * Resolves with the result; `ok` is false when an echoed byte did not match (each mismatch is
 * listed with its connection and offset), when any connection failed (errors by kind), when no
 * request completed or when the scenario's invariant broke. Throws `BenchUsageError` for invalid
 * options, and rejects when the client worker threads cannot start or a scenario's stats
 * endpoint cannot be read.
 */
export async function runBench(input: BenchOptions): Promise<BenchResult> {
  const options = resolveOptions(input);

  if (options.scenario !== undefined) {
    const outcome = await SCENARIOS[options.scenario].run(options);
    const failures = [...outcome.failures];
    const mismatches = outcome.load?.mismatches.length ?? 0;
    if (mismatches > 0 && !failures.some((failure) => failure.includes('mismatch'))) {
      failures.push(`${mismatches} echoed byte mismatch(es)`);
    }
    return toResult(options, outcome.load, failures, outcome.details);
  }

  const load = await runLoad(options, specOf(options));
  const failures: string[] = [];
  if (load.counters.requests === 0) failures.push('no request completed');
  for (const [kind, count] of Object.entries(load.errors)) {
    failures.push(`${count} ${kind} error(s), first: ${load.errorSamples[kind]}`);
  }
  return toResult(options, load, failures, {});
}
