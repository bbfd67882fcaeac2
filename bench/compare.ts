/**
 * shardtls against other TLS servers on the same machine.
 *
 * 1. Echo: `shardtls serve` (direct and relay transport, N shards), a Node `tls` echo server in
 *    one process and a Node `cluster` echo server with N workers, under 64-byte ping-pong and
 *    16 KiB bulk streams driven by `shardtls bench` in this process.
 * 2. HTTPS proxy: `shardtls serve --handler proxy` (N shards), haproxy (N threads, TCP mode) and
 *    hitch (N workers) in front of one plain node:http backend, driven by wrk. The backend
 *    without TLS is listed as the ceiling. A missing haproxy, hitch or wrk is skipped with a
 *    message.
 *
 * Every server runs for the whole benchmark. Each round runs every workload once against each
 * server in turn, and the tables print the median over the rounds with its ratio to shardtls
 * direct. Every child process is stopped by PID at the end, on failure and on SIGINT/SIGTERM.
 *
 * Run: npm run build && npx tsx bench/compare.ts [--shards N] [--seconds N] [--rounds N]
 *      [--client-threads N] [--only echo|proxy]
 */
import type { WrkSample } from './proxies.js';
import { runWrk, startHaproxy, startHitch } from './proxies.js';
import type { CertificateFiles, ChildServer, Sample } from './support.js';
import {
  jsonListeningPort,
  machineInfo,
  measure,
  median,
  numberFlag,
  printHeader,
  printTable,
  startServe,
  startServer,
  which,
  range,
  withRatio,
  workloads,
  writeCertificate,
} from './support.js';

/** Connections that wrk keeps open in the proxy comparison. */
const WRK_CONNECTIONS = 16;

/** A server under test and how to start it. */
interface Contender {
  label: string;
  start(): Promise<ChildServer>;
}

/** Medians of the echo workloads for one server. */
interface EchoRow {
  label: string;
  samples: Sample[][];
}

/** Starts one of the Node reference servers in bench/servers. */
function startNodeServer(label: string, script: string, args: string[]): Promise<ChildServer> {
  return startServer(label, process.execPath, [`bench/servers/${script}`, ...args], {
    readPort: jsonListeningPort,
  });
}

function echoContenders(cert: CertificateFiles, shards: number): Contender[] {
  const pems = ['--cert', cert.cert, '--key', cert.key];
  return [
    {
      label: `shardtls direct, ${shards} shard(s)`,
      start: () => startServe({ transport: 'direct', shards, cert }),
    },
    {
      label: `shardtls relay, ${shards} shard(s)`,
      start: () => startServe({ transport: 'relay', shards, cert }),
    },
    {
      label: 'node tls, 1 process',
      start: () => startNodeServer('node tls', 'tls-echo.mjs', pems),
    },
    {
      label: `node cluster, ${shards} worker(s)`,
      start: () =>
        startNodeServer('node cluster', 'cluster-echo.mjs', [...pems, '--workers', String(shards)]),
    },
  ];
}

function proxyContenders(cert: CertificateFiles, shards: number, backendPort: number): Contender[] {
  const backend = `127.0.0.1:${backendPort}`;
  const contenders: Contender[] = [
    {
      label: `shardtls proxy direct, ${shards} shard(s)`,
      start: () => startServe({ transport: 'direct', shards, cert, handler: 'proxy', backend }),
    },
    {
      label: `shardtls proxy relay, ${shards} shard(s)`,
      start: () => startServe({ transport: 'relay', shards, cert, handler: 'proxy', backend }),
    },
  ];

  const haproxy = which('haproxy');
  if (haproxy === undefined) console.log('haproxy is not installed: its row is skipped');
  else {
    contenders.push({
      label: `haproxy, ${shards} thread(s), TCP mode`,
      start: () => startHaproxy(haproxy, cert, backendPort, shards),
    });
  }

  const hitch = which('hitch');
  if (hitch === undefined) console.log('hitch is not installed: its row is skipped');
  else {
    contenders.push({
      label: `hitch, ${shards} worker(s)`,
      start: () => startHitch(hitch, cert, backendPort, shards),
    });
  }
  return contenders;
}

/** Runs the echo workloads, alternating the servers in each round. */
async function compareEcho(
  contenders: Contender[],
  seconds: number,
  rounds: number,
  clientThreads: number,
  servers: ChildServer[],
): Promise<EchoRow[]> {
  const loads = workloads(seconds, clientThreads);
  const started: ChildServer[] = [];
  for (const contender of contenders) {
    const server = await contender.start();
    servers.push(server);
    started.push(server);
  }
  const rows = contenders.map((contender) => ({
    label: contender.label,
    samples: loads.map((): Sample[] => []),
  }));

  for (let round = 0; round < rounds; round++) {
    for (const [w, workload] of loads.entries()) {
      for (const [c, row] of rows.entries()) {
        const sample = await measure(workload, started[c]!.port);
        row.samples[w]!.push(sample);
        console.error(
          `round ${round + 1}/${rounds} ${workload.name}, ${row.label}: ` +
            `${sample.requestsPerSecond.toFixed(0)} requests/s, ` +
            `${sample.megabytesPerSecond.toFixed(1)} MB/s, p99 ${sample.p99Us} us`,
        );
      }
    }
  }
  return rows;
}

function printEcho(rows: EchoRow[]): void {
  const all = (row: EchoRow, w: number, field: keyof Sample): number[] =>
    row.samples[w]!.map((sample) => sample[field]);
  const pick = (row: EchoRow, w: number, field: keyof Sample): number => median(all(row, w, field));
  const base = rows[0]!;

  console.log('echo, ping-pong 64 B, 16 connections (ratio to shardtls direct)');
  const ping = [['server', 'requests/s', 'range of runs', 'p99 latency us']];
  for (const row of rows) {
    ping.push([
      row.label,
      withRatio(pick(row, 0, 'requestsPerSecond'), pick(base, 0, 'requestsPerSecond')),
      range(all(row, 0, 'requestsPerSecond')),
      withRatio(pick(row, 0, 'p99Us'), pick(base, 0, 'p99Us')),
    ]);
  }
  printTable(ping);
  console.log('');

  console.log('echo, bulk 16 KiB writes, 16 in flight, 4 connections (ratio to shardtls direct)');
  const bulk = [['server', 'MB/s echoed', 'range of runs', 'p99 latency us']];
  for (const row of rows) {
    bulk.push([
      row.label,
      withRatio(pick(row, 1, 'megabytesPerSecond'), pick(base, 1, 'megabytesPerSecond'), 1),
      range(all(row, 1, 'megabytesPerSecond'), 1),
      withRatio(pick(row, 1, 'p99Us'), pick(base, 1, 'p99Us')),
    ]);
  }
  printTable(bulk);
  console.log('');
}

/** Runs wrk against every proxy and the bare backend, alternating in each round. */
async function compareProxies(
  cert: CertificateFiles,
  shards: number,
  seconds: number,
  rounds: number,
  clientThreads: number,
  servers: ChildServer[],
): Promise<void> {
  const wrk = which('wrk');
  if (wrk === undefined) {
    console.log('wrk is not installed: the proxy comparison is skipped');
    return;
  }

  const backend = await startNodeServer('http backend', 'http-backend.mjs', []);
  servers.push(backend);

  const targets: { label: string; url: string }[] = [];
  for (const contender of proxyContenders(cert, shards, backend.port)) {
    const server = await contender.start();
    servers.push(server);
    targets.push({ label: contender.label, url: `https://127.0.0.1:${server.port}/` });
  }
  targets.push({
    label: 'backend alone, plain HTTP (ceiling)',
    url: `http://127.0.0.1:${backend.port}/`,
  });

  const load = { threads: clientThreads, connections: WRK_CONNECTIONS, seconds };
  const samples = targets.map((): WrkSample[] => []);
  for (let round = 0; round < rounds; round++) {
    for (const [t, target] of targets.entries()) {
      const sample = await runWrk(wrk, target.url, load);
      if (sample.errors > 0) {
        throw new Error(
          `wrk against ${target.label} got ${sample.errors} socket error(s) or non-2xx ` +
            'response(s): check that server and the backend',
        );
      }
      samples[t]!.push(sample);
      console.error(
        `round ${round + 1}/${rounds} wrk, ${target.label}: ` +
          `${sample.requestsPerSecond.toFixed(0)} requests/s, p99 ${sample.p99Us} us`,
      );
    }
  }

  const all = (t: number, field: keyof WrkSample): number[] =>
    samples[t]!.map((sample) => sample[field]);
  const pick = (t: number, field: keyof WrkSample): number => median(all(t, field));
  console.log(
    `HTTPS proxy to one node:http backend (64-byte body), wrk ${clientThreads} thread(s), ` +
      `${WRK_CONNECTIONS} keep-alive connections (ratio to shardtls proxy direct)`,
  );
  const rows = [['server', 'requests/s', 'range of runs', 'p50 latency us', 'p99 latency us']];
  for (const [t, target] of targets.entries()) {
    rows.push([
      target.label,
      withRatio(pick(t, 'requestsPerSecond'), pick(0, 'requestsPerSecond')),
      range(all(t, 'requestsPerSecond')),
      withRatio(pick(t, 'p50Us'), pick(0, 'p50Us')),
      withRatio(pick(t, 'p99Us'), pick(0, 'p99Us')),
    ]);
  }
  printTable(rows);
}

async function main(): Promise<void> {
  const shards = numberFlag('shards', 2);
  const seconds = numberFlag('seconds', 3);
  const rounds = numberFlag('rounds', 3);
  const clientThreads = numberFlag('client-threads', 1);
  const onlyAt = process.argv.indexOf('--only');
  const only = onlyAt < 0 ? 'all' : process.argv[onlyAt + 1];
  if (only !== 'all' && only !== 'echo' && only !== 'proxy') {
    throw new Error(`invalid --only ${only}: expected echo or proxy`);
  }
  const machine = machineInfo();

  printHeader(
    `npx tsx bench/compare.ts --shards ${shards} --seconds ${seconds} --rounds ${rounds} ` +
      `--client-threads ${clientThreads}${only === 'all' ? '' : ` --only ${only}`}`,
    machine,
  );
  console.log(
    `clients: shardtls bench (echo) and wrk (proxy), ${clientThreads} client thread(s); ` +
      `${rounds} alternated rounds of ${seconds} s per figure, median shown`,
  );
  console.log('');

  const cert = await writeCertificate();
  const servers: ChildServer[] = [];
  try {
    if (only !== 'proxy') {
      const echo = await compareEcho(
        echoContenders(cert, shards),
        seconds,
        rounds,
        clientThreads,
        servers,
      );
      printEcho(echo);
    }

    // The echo servers stop first, so they do not share the machine with the proxy runs.
    await Promise.all(servers.splice(0).map((server) => server.stop()));
    if (only !== 'echo') {
      await compareProxies(cert, shards, seconds, rounds, clientThreads, servers);
    }
  } finally {
    await Promise.all(servers.map((server) => server.stop()));
    cert.remove();
  }
}

await main();
