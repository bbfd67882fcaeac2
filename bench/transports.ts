/**
 * Transports side by side: `shardtls serve` with the direct and the relay transport, 1 and 2
 * shards, under 64-byte ping-pong (requests/s, p99 latency) and 16 KiB bulk streams (MB/s).
 *
 * All four servers run for the whole benchmark. Each round runs every workload once against each
 * server, alternating (A B C D A B C D ...), so a change in machine load hits every server alike.
 * The tables print the median over the rounds and its ratio to direct with 1 shard. Every load
 * is bounded by its duration and by the bench tool's run timeout.
 *
 * Run: npm run build && npx tsx bench/transports.ts [--seconds N] [--rounds N] [--client-threads N]
 */
import type { ChildServer, Sample } from './support.js';
import {
  machineInfo,
  measure,
  median,
  numberFlag,
  printHeader,
  printTable,
  startServe,
  range,
  withRatio,
  workloads,
  writeCertificate,
} from './support.js';

/** One server of the comparison. */
interface Config {
  label: string;
  transport: 'direct' | 'relay';
  shards: number;
}

const CONFIGS: Config[] = [
  { label: 'direct, 1 shard', transport: 'direct', shards: 1 },
  { label: 'relay, 1 shard', transport: 'relay', shards: 1 },
  { label: 'direct, 2 shards', transport: 'direct', shards: 2 },
  { label: 'relay, 2 shards', transport: 'relay', shards: 2 },
];

async function main(): Promise<void> {
  const seconds = numberFlag('seconds', 3);
  const rounds = numberFlag('rounds', 3);
  const clientThreads = numberFlag('client-threads', 1);
  const machine = machineInfo();

  printHeader(
    `npx tsx bench/transports.ts --seconds ${seconds} --rounds ${rounds} ` +
      `--client-threads ${clientThreads}`,
    machine,
  );
  console.log(
    `client: shardtls bench in this process, ${clientThreads} client thread(s); ` +
      `${rounds} alternated rounds of ${seconds} s per figure, median shown`,
  );
  console.log('');

  const cert = await writeCertificate();
  const servers: ChildServer[] = [];
  const loads = workloads(seconds, clientThreads);
  const samples = loads.map(() => CONFIGS.map((): Sample[] => []));

  try {
    for (const config of CONFIGS) servers.push(await startServe({ ...config, cert }));

    for (let round = 0; round < rounds; round++) {
      for (const [w, workload] of loads.entries()) {
        for (const [c, config] of CONFIGS.entries()) {
          const sample = await measure(workload, servers[c]!.port);
          samples[w]![c]!.push(sample);
          console.error(
            `round ${round + 1}/${rounds} ${workload.name}, ${config.label}: ` +
              `${sample.requestsPerSecond.toFixed(0)} requests/s, ` +
              `${sample.megabytesPerSecond.toFixed(1)} MB/s, p99 ${sample.p99Us} us`,
          );
        }
      }
    }
  } finally {
    await Promise.all(servers.map((server) => server.stop()));
    cert.remove();
  }

  const all = (w: number, c: number, field: keyof Sample): number[] =>
    samples[w]![c]!.map((sample) => sample[field]);
  const pick = (w: number, c: number, field: keyof Sample): number => median(all(w, c, field));

  console.log('ping-pong, 64 B, 16 connections (ratio to direct, 1 shard)');
  const pingRows = [['server', 'requests/s', 'range of runs', 'p99 latency us']];
  for (const [c, config] of CONFIGS.entries()) {
    pingRows.push([
      config.label,
      withRatio(pick(0, c, 'requestsPerSecond'), pick(0, 0, 'requestsPerSecond')),
      range(all(0, c, 'requestsPerSecond')),
      withRatio(pick(0, c, 'p99Us'), pick(0, 0, 'p99Us')),
    ]);
  }
  printTable(pingRows);
  console.log('');

  console.log('bulk, 16 KiB writes, 16 in flight, 4 connections (ratio to direct, 1 shard)');
  const bulkRows = [['server', 'MB/s echoed', 'range of runs', 'p99 latency us']];
  for (const [c, config] of CONFIGS.entries()) {
    bulkRows.push([
      config.label,
      withRatio(pick(1, c, 'megabytesPerSecond'), pick(1, 0, 'megabytesPerSecond'), 1),
      range(all(1, c, 'megabytesPerSecond'), 1),
      withRatio(pick(1, c, 'p99Us'), pick(1, 0, 'p99Us')),
    ]);
  }
  printTable(bulkRows);
}

await main();
