/**
 * SIGTERM while clients keep sending: each client gets the echo of a prefix of what it sent,
 * then close_notify and FIN, and never a TCP reset (which would throw away the last bytes).
 */
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import tls from 'node:tls';

import { describe, expect, test } from 'vitest';

import { startServe } from './fixtures/serve-process.js';
import { waitFor } from './helpers/service.js';

interface Outcome {
  error: string | null;
  ended: boolean;
  prefix: boolean;
}

interface BusyClient {
  /** Bytes echoed so far. */
  echoed(): number;
  /** How the connection ended, once it has closed. */
  outcome: Promise<Outcome>;
}

/** Connects a client that sends 512 bytes every 5 ms until the server ends the connection. */
function busyClient(port: number): Promise<BusyClient> {
  return new Promise((resolveConnected, rejectConnected) => {
    // allowHalfOpen is passed on to the TCP socket, though the tls typings leave it out.
    const options = { host: '127.0.0.1', port, rejectUnauthorized: false, allowHalfOpen: true };
    const socket = tls.connect(options as tls.ConnectionOptions);
    const sent: Buffer[] = [];
    const received: Buffer[] = [];
    let error: string | null = null;
    let ended = false;

    const timer = setInterval(() => {
      if (!socket.writable) return;
      const chunk = randomBytes(512);
      sent.push(chunk);
      socket.write(chunk);
    }, 5);
    let echoedBytes = 0;
    socket.on('data', (chunk: Buffer) => {
      received.push(chunk);
      echoedBytes += chunk.byteLength;
    });
    socket.on('error', (err: NodeJS.ErrnoException) => (error ??= err.code ?? err.message));
    socket.on('end', () => {
      ended = true;
      socket.end(); // close_notify and FIN back, as a client that half-closes does
    });

    const outcome = new Promise<Outcome>((resolve) => {
      socket.on('close', () => {
        clearInterval(timer);
        const all = Buffer.concat(sent);
        const echoed = Buffer.concat(received);
        resolve({ error, ended, prefix: all.subarray(0, echoed.byteLength).equals(echoed) });
      });
    });
    socket.once('secureConnect', () => resolveConnected({ echoed: () => echoedBytes, outcome }));
    socket.once('error', rejectConnected);
  });
}

describe.each(['direct', 'relay'])('%s transport', (transport) => {
  test('SIGTERM closes busy clients cleanly', async () => {
    const serve = await startServe(
      ['--transport', transport, '--shards', '2', '--drain-timeout', '3000'],
      tmpdir(),
    );
    const clients = await Promise.all(Array.from({ length: 100 }, () => busyClient(serve.port)));

    // Every client has data in flight both ways when the drain starts.
    await waitFor(() => clients.every((client) => client.echoed() >= 2048));
    expect(await serve.stop()).toBe(0);

    const results = await Promise.all(clients.map((client) => client.outcome));
    expect(results.filter((r) => r.error !== null).map((r) => r.error)).toEqual([]);
    expect(results.every((r) => r.ended)).toBe(true);
    expect(results.every((r) => r.prefix)).toBe(true);
  });
});
