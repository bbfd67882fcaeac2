import { Worker } from 'node:worker_threads';

import { expect, test } from 'vitest';

import { createSecureContext } from '../src/tls/context.js';
import { createEngine, liveEngines } from '../src/tls/openssl-engine.js';
import { testCerts } from './fixtures/certs.js';
import { handshakePair, send } from './fixtures/engine-pair.js';

interface WorkerReport {
  results: Array<{ version: string; received: string; reply: string; drained: boolean }>;
  liveEngines: number;
}

const certs = testCerts();
const fixture = new URL('./fixtures/engine-worker.mjs', import.meta.url);

/** Runs the worker fixture and returns its report and exit code. */
function runWorker(leak: boolean): Promise<{ report: WorkerReport; exitCode: number }> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(fixture, {
      workerData: { certs, versions: ['TLSv1.2', 'TLSv1.3'], leak },
    });
    let report: WorkerReport | undefined;
    worker.once('message', (message: WorkerReport) => (report = message));
    worker.once('error', reject);
    worker.once('exit', (exitCode) => {
      if (report === undefined) reject(new Error(`worker exited with ${exitCode} and no report`));
      else resolve({ report, exitCode });
    });
  });
}

test('engines run in a worker thread', async () => {
  const { report, exitCode } = await runWorker(false);

  expect(exitCode).toBe(0);
  expect(report.liveEngines).toBe(0);
  expect(report.results.map((r) => r.version)).toEqual(['TLSv1.2', 'TLSv1.3']);
  for (const result of report.results) {
    expect(result.received).toBe(`hello over ${result.version} from a worker`);
    expect(result.reply).toBe('reply');
    expect(result.drained).toBe(true);
  }
});

test('workers and the main thread at once', async () => {
  const server = createSecureContext({ cert: certs.server.cert, key: certs.server.key });
  const client = createSecureContext({ ca: certs.ca.cert, servername: 'localhost' });
  const running = [runWorker(false), runWorker(true), runWorker(false)];

  // The main thread's counters are its own: the workers' engines do not show here.
  for (let i = 0; i < 20; i++) {
    const c = createEngine(client);
    const s = createEngine(server, { isServer: true });
    handshakePair(c, s);
    expect(send(c, s, Buffer.from('main')).received.toString()).toBe('main');
    c.destroy();
    s.destroy();
  }
  expect(liveEngines()).toBe(0);

  const reports = await Promise.all(running);
  expect(reports.map((r) => r.exitCode)).toEqual([0, 0, 0]);
  // The leaking worker reports its leaked engine, then exits cleanly.
  expect(reports.map((r) => r.report.liveEngines)).toEqual([0, 1, 0]);
  server.destroy();
  client.destroy();
});
