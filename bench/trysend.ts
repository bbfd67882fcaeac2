/**
 * Throughput of TlsSocket.trySend between two real OpenSSL engines over an in-memory pipe.
 *
 * Run: npx tsx bench/trysend.ts [--seconds N] [--capacity BYTES]
 *
 * For 64 B messages (one per call, and 256 per call as an iovec) and 16 KiB messages (one per
 * call), a client sends with `trySend`, parking on `writable` after EAGAIN, while a server
 * drains with `tryRecv`. The
 * run is bounded by a message count and by time. It prints MB/s of plaintext, messages/s and
 * TLS application-data records per message, counted from the record headers in the pipe.
 */
import { randomBytes } from 'node:crypto';
import { cpus } from 'node:os';

import { EAGAIN } from '../src/shared/codes.js';
import { createSecureContext } from '../src/tls/context.js';
import { createMemoryPipe } from '../src/tls/memory-pipe.js';
import { createEngine } from '../src/tls/openssl-engine.js';
import { TlsSocket } from '../src/tls/tls-socket.js';
import { testCerts } from '../test/fixtures/certs.js';

interface Result {
  size: number;
  batch: number;
  messages: number;
  seconds: number;
  records: number;
}

function argument(name: string, fallback: number): number {
  const index = process.argv.indexOf(name);
  if (index < 0) return fallback;
  const value = Number(process.argv[index + 1]);
  if (!Number.isFinite(value) || value <= 0) {
    throw new Error(`invalid ${name} '${process.argv[index + 1]}': expected a positive number`);
  }
  return value;
}

async function run(
  size: number,
  batch: number,
  capacity: number,
  seconds: number,
): Promise<Result> {
  const certs = testCerts();
  const serverContext = createSecureContext({ cert: certs.server.cert, key: certs.server.key });
  const clientContext = createSecureContext({ ca: certs.ca.cert, servername: 'localhost' });
  const pipe = createMemoryPipe(capacity);
  const client = new TlsSocket(pipe.a, createEngine(clientContext));
  const server = new TlsSocket(pipe.b, createEngine(serverContext, { isServer: true }));
  await Promise.all([client.handshake(), server.handshake()]);

  const payload = randomBytes(size);
  const message = Array.from({ length: batch }, () => payload);
  const callBytes = size * batch;
  const maxMessages = Math.floor((4 * 1024 * 1024 * 1024) / size);
  const deadline = performance.now() + seconds * 1000;
  const recordsBefore = pipe.a.sent.applicationDataRecords;
  const sink = new Uint8Array(64 * 1024);
  let sent = 0;
  let received = 0;
  let wakeWriter: (() => void) | null = null;
  let finish: (() => void) | null = null;

  // The reader drains until EAGAIN on every readable callback.
  server.setHandler({
    writable: () => undefined,
    readable: () => {
      for (;;) {
        const n = server.tryRecv(sink, 0, sink.length);
        if (n <= 0) {
          if (n !== EAGAIN) throw new Error(`tryRecv returned ${n}`);
          break;
        }
        received += n;
      }
      if (received === sent * size && finish !== null) finish();
    },
  });
  client.setHandler({ readable: () => undefined, writable: () => wakeWriter?.() });
  server.tryRecv(sink, 0, sink.length);

  const start = performance.now();
  while (sent < maxMessages && performance.now() < deadline) {
    // A batch of messages between checks of the clock keeps the timer off the hot path.
    for (let i = 0; i < 256 && sent < maxMessages; i++) {
      const result = client.trySend(message);
      if (result === callBytes) {
        sent += batch;
        continue;
      }
      // A call of at most one record fits the engine's output buffer (17 KiB by default) whole,
      // so anything but a full count or EAGAIN is reported.
      if (result !== EAGAIN) throw new Error(`trySend returned ${result} for ${callBytes} bytes`);
      await new Promise<void>((resolve) => {
        wakeWriter = resolve;
      });
      wakeWriter = null;
    }
  }
  if (received < sent * size) {
    await new Promise<void>((resolve) => {
      finish = resolve;
    });
  }
  const elapsed = (performance.now() - start) / 1000;
  const records = pipe.a.sent.applicationDataRecords - recordsBefore;

  client.close();
  server.close();
  clientContext.destroy();
  serverContext.destroy();
  return { size, batch, messages: sent, seconds: elapsed, records };
}

async function main(): Promise<void> {
  const seconds = argument('--seconds', 3);
  const capacity = argument('--capacity', 64 * 1024);
  const command = `npx tsx bench/trysend.ts --seconds ${seconds} --capacity ${capacity}`;
  console.log(`command: ${command}`);
  console.log(`machine: ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores`);
  console.log(`node: ${process.version}, pipe capacity ${capacity} bytes per direction`);
  console.log('');
  console.log('message  per call     MB/s   messages/s  records/message  messages');

  const cases = [
    { size: 64, batch: 1 },
    { size: 64, batch: 256 },
    { size: 16 * 1024, batch: 1 },
  ];
  for (const { size, batch } of cases) {
    const r = await run(size, batch, capacity, seconds);
    const mbps = (r.messages * r.size) / r.seconds / 1e6;
    const rate = r.messages / r.seconds;
    const label = size < 1024 ? `${size} B` : `${size / 1024} KiB`;
    console.log(
      `${label.padEnd(8)} ${String(r.batch).padStart(8)} ${mbps.toFixed(1).padStart(7)} ${rate.toFixed(0).padStart(12)} ` +
        `${(r.records / r.messages).toFixed(3).padStart(16)} ${String(r.messages).padStart(9)}`,
    );
  }
}

await main();
