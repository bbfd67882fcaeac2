/**
 * Neighbours of a stalled reader: the ping-pong rate of clients on a shard, alone and next to
 * clients that send 32 MiB each and never read their echo.
 *
 * One shard per server, so the stalled clients share it with the measured ones. Rounds alternate
 * the two cases on both transports; each table row shows the medians and their ratio, which is
 * the share of their rate that the neighbours keep.
 *
 * Run: npm run build && npx tsx bench/slow-reader.ts [--seconds N] [--rounds N] [--stalled N]
 */
import { randomBytes } from 'node:crypto';
import tls from 'node:tls';

import type { ChildServer } from './support.js';
import {
  machineInfo,
  measure,
  median,
  numberFlag,
  printHeader,
  printTable,
  range,
  startServe,
  workloads,
  writeCertificate,
} from './support.js';

const TRANSPORTS = ['direct', 'relay'] as const;
const STALLED_BYTES = 32 * 1024 * 1024;

/** Opens `count` clients that each write STALLED_BYTES and never read; returns them. */
async function stallClients(port: number, count: number): Promise<tls.TLSSocket[]> {
  const payload = randomBytes(STALLED_BYTES);
  const sockets: tls.TLSSocket[] = [];
  for (let i = 0; i < count; i++) {
    const socket = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', () => resolve());
      socket.once('error', reject);
    });
    socket.on('error', () => {});
    socket.pause();
    socket.write(payload);
    sockets.push(socket);
  }
  return sockets;
}

async function main(): Promise<void> {
  const seconds = numberFlag('seconds', 3);
  const rounds = numberFlag('rounds', 3);
  const stalled = numberFlag('stalled', 4);
  const machine = machineInfo();

  printHeader(
    `npx tsx bench/slow-reader.ts --seconds ${seconds} --rounds ${rounds} --stalled ${stalled}`,
    machine,
  );
  console.log(
    `neighbours: ping-pong 64 B, 16 connections, 1 client thread; ${stalled} stalled clients ` +
      `of 32 MiB each; 1 shard; ${rounds} alternated rounds of ${seconds} s, median shown`,
  );
  console.log('');

  const cert = await writeCertificate();
  const servers: ChildServer[] = [];
  const pingPong = workloads(seconds, 1)[0]!;
  const alone = TRANSPORTS.map((): number[] => []);
  const beside = TRANSPORTS.map((): number[] => []);

  try {
    for (const transport of TRANSPORTS) {
      servers.push(await startServe({ transport, shards: 1, cert }));
    }

    for (let round = 0; round < rounds; round++) {
      for (const [t, transport] of TRANSPORTS.entries()) {
        const port = servers[t]!.port;
        alone[t]!.push((await measure(pingPong, port)).requestsPerSecond);

        const sockets = await stallClients(port, stalled);
        try {
          beside[t]!.push((await measure(pingPong, port)).requestsPerSecond);
        } finally {
          for (const socket of sockets) socket.destroy();
        }
        console.error(
          `round ${round + 1}/${rounds} ${transport}: ` +
            `${alone[t]!.at(-1)!.toFixed(0)} alone, ${beside[t]!.at(-1)!.toFixed(0)} beside`,
        );
      }
    }
  } finally {
    await Promise.all(servers.map((server) => server.stop()));
    cert.remove();
  }

  const rows = [['transport', 'alone req/s', 'range', 'beside stalled req/s', 'range', 'kept']];
  for (const [t, transport] of TRANSPORTS.entries()) {
    const a = median(alone[t]!);
    const b = median(beside[t]!);
    rows.push([
      transport,
      a.toFixed(0),
      range(alone[t]!),
      b.toFixed(0),
      range(beside[t]!),
      (b / a).toFixed(2),
    ]);
  }
  printTable(rows);
}

await main();
