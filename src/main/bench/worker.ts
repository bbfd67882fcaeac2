/**
 * Piscina task of `shardtls bench`: drives one worker's share of the connections and returns its
 * counters and latency histogram. Loaded from dist/main/bench/worker.js.
 */
import * as hdr from 'hdr-histogram-js';
import { LoadRun } from './client.js';
import type { ProgressMessage, WorkerResult, WorkerTask } from './types.js';

/** Interval between progress messages, in milliseconds. */
const PROGRESS_INTERVAL_MS = 250;

/**
 * Runs a task to its end. Resolves with the task's counters, errors by kind, mismatches and its
 * histogram encoded as compressed base64; it never rejects for network failures, which are
 * counted instead.
 */
export default async function runTask(task: WorkerTask): Promise<WorkerResult> {
  const run = new LoadRun(task);
  const port = task.progressPort;

  const post = (): void => {
    const message: ProgressMessage = {
      workerIndex: task.workerIndex,
      counters: { ...run.counters },
      errors: run.errorCount(),
    };
    port?.postMessage(message);
  };
  const timer = port === undefined ? undefined : setInterval(post, PROGRESS_INTERVAL_MS);

  try {
    await run.run();
  } finally {
    clearInterval(timer);
    if (port !== undefined) {
      post();
      port.close();
    }
  }

  return {
    counters: run.counters,
    errors: run.errors,
    errorSamples: run.errorSamples,
    mismatches: run.mismatches,
    histogram: hdr.encodeIntoCompressedBase64(run.histogram),
    elapsedMs: run.elapsedMs(),
  };
}
