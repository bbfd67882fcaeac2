import { spawn } from 'node:child_process';
import net from 'node:net';
import tls from 'node:tls';
import { connectOptions } from './client.js';
import type { LoadResult, LoadSpec } from './load.js';
import { runLoad, specOf } from './load.js';
import type { ResolvedOptions, ScenarioName } from './options.js';
import { buildTable, slice } from './pattern.js';

/** What a scenario found: the invariant it checked and every way it was broken. */
export interface ScenarioOutcome {
  invariant: string;
  /** Each broken part of the invariant, in one sentence; empty when it held. */
  failures: string[];
  /** The scenario's main load, whose figures the summary prints. */
  load?: LoadResult;
  /** Scenario-specific figures for the summary and the JSON output. */
  details: Record<string, unknown>;
}

/** A stress scenario: its invariant, for --help and the summary, and its run. */
export interface Scenario {
  invariant: string;
  run(options: ResolvedOptions): Promise<ScenarioOutcome>;
}

/** Bytes a slow reader sends before it waits; the server must not buffer them without bound. */
const SLOW_READER_BYTES = 8 << 20;

/** Bytes each big-bulk connection sends and must get back. */
const BIG_BULK_BYTES = 32 << 20;

/** Bytes each half-close connection sends before it ends its write side. */
const HALF_CLOSE_BYTES = 1 << 20;

/** Rounds of vanishing clients in abrupt-close. */
const ABRUPT_ROUNDS = 3;

/** Lines each key-update client sends, one before and one after each KeyUpdate. */
const KEY_UPDATE_LINES = 3;

/** Lists the failures of a load: errors by kind, mismatches and no completed request. */
function loadFailures(load: LoadResult, who: string): string[] {
  const failures: string[] = [];
  if (load.counters.requests === 0) failures.push(`${who} completed no request`);
  for (const [kind, count] of Object.entries(load.errors)) {
    failures.push(`${who} met ${count} ${kind} error(s): ${load.errorSamples[kind]}`);
  }
  return failures;
}

/** Reads `memory.rss` from the server's stats endpoint; rejects when it is missing. */
export async function readServerRss(statsUrl: string): Promise<number> {
  let response: Response;
  try {
    response = await fetch(statsUrl, { signal: AbortSignal.timeout(5000) });
  } catch (error) {
    throw new Error(`cannot read stats endpoint ${statsUrl}: ${(error as Error).message}`);
  }
  if (!response.ok) throw new Error(`stats endpoint ${statsUrl} returned HTTP ${response.status}`);

  const body = (await response.json()) as { memory?: { rss?: unknown } };
  const rss = body.memory?.rss;
  if (typeof rss !== 'number') throw new Error(`stats endpoint ${statsUrl} has no memory.rss`);
  return rss;
}

/** Opens a client that sends up to SLOW_READER_BYTES and never reads; resolves once connected. */
function openSlowReader(options: ResolvedOptions, table: Buffer, index: number) {
  const socket = tls.connect(connectOptions(targetOf(options)));
  let sent = 0;

  const write = (): void => {
    while (sent < SLOW_READER_BYTES) {
      const piece = slice(table, index * 7919, sent, SLOW_READER_BYTES - sent);
      sent += piece.length;
      if (!socket.write(piece)) return;
    }
  };

  socket.on('drain', write);
  socket.on('error', () => {});
  const ready = new Promise<boolean>((resolve) => {
    socket.once('secureConnect', () => {
      socket.pause();
      write();
      resolve(true);
    });
    socket.once('close', () => resolve(false));
  });

  return { socket, ready, sent: () => sent };
}

function targetOf(options: ResolvedOptions) {
  return {
    host: options.host,
    port: options.port,
    servername: options.servername,
    ca: options.caPem,
    insecure: options.insecure,
    tlsVersion: options.tlsVersion,
  };
}

async function slowReader(options: ResolvedOptions): Promise<ScenarioOutcome> {
  const slowCount = Math.max(1, Math.floor(options.connections / 4));
  const others = Math.max(1, options.connections - slowCount);
  const failures: string[] = [];
  const details: Record<string, unknown> = { slowReaders: slowCount, otherConnections: others };

  const baseline =
    options.statsUrl === undefined ? undefined : await readServerRss(options.statsUrl);
  const table = buildTable(options.seed);
  const slow = Array.from({ length: slowCount }, (_, i) => openSlowReader(options, table, i));

  try {
    const connected = await Promise.all(slow.map((client) => client.ready));
    const missing = connected.filter((ok) => !ok).length;
    if (missing > 0) failures.push(`${missing} slow reader(s) could not connect`);

    const load = await runLoad(options, { ...specOf(options), connections: others });
    failures.push(...loadFailures(load, 'the other clients'));
    details.slowReaderBytesSent = slow.reduce((total, client) => total + client.sent(), 0);

    if (options.statsUrl !== undefined && baseline !== undefined) {
      const rss = await readServerRss(options.statsUrl);
      const bound = baseline + options.maxRssGrowthBytes;
      details.serverRss = { baseline, after: rss, bound };
      if (rss > bound) {
        failures.push(`server RSS grew from ${baseline} to ${rss} bytes, above the bound ${bound}`);
      }
    }

    return { invariant: SCENARIOS['slow-reader'].invariant, failures, load, details };
  } finally {
    for (const client of slow) client.socket.destroy();
  }
}

/** Opens a client that vanishes after its first echoed bytes: TCP RST, or FIN without close_notify. */
function vanishingClient(
  options: ResolvedOptions,
  table: Buffer,
  reset: boolean,
): Promise<boolean> {
  return new Promise((resolve) => {
    const raw = net.connect({ host: options.host, port: options.port });
    const socket = tls.connect({ ...connectOptions(targetOf(options)), socket: raw });
    let echoed = false;

    socket.on('secureConnect', () => {
      socket.write(slice(table, 0, 0, 65_536));
      socket.write(slice(table, 0, 65_536, 65_536));
    });
    socket.once('data', () => {
      echoed = true;
      if (reset) raw.resetAndDestroy();
      else raw.destroy();
    });
    socket.on('error', () => {});
    raw.on('error', () => {});
    raw.on('close', () => resolve(echoed));
    socket.setTimeout(options.idleTimeoutMs, () => raw.destroy());
  });
}

async function abruptClose(options: ResolvedOptions): Promise<ScenarioOutcome> {
  const table = buildTable(options.seed);
  const perRound = Math.max(2, Math.floor(options.connections / 2));
  const failures: string[] = [];
  let vanished = 0;
  let notEchoed = 0;

  for (let round = 0; round < ABRUPT_ROUNDS; round++) {
    const clients = Array.from({ length: perRound }, (_, i) =>
      vanishingClient(options, table, i % 2 === 0),
    );
    for (const echoed of await Promise.all(clients)) {
      vanished++;
      if (!echoed) notEchoed++;
    }
  }
  if (notEchoed > 0) failures.push(`${notEchoed} client(s) got no echo before they vanished`);

  const load = await runLoad(options, specOf(options));
  failures.push(...loadFailures(load, 'the clients after the abrupt closes'));

  return {
    invariant: SCENARIOS['abrupt-close'].invariant,
    failures,
    load,
    details: { vanishedClients: vanished },
  };
}

async function halfClose(options: ResolvedOptions): Promise<ScenarioOutcome> {
  const spec: LoadSpec = {
    mode: 'half-close',
    connections: options.connections,
    size: Math.min(options.size, 65_536),
    pipeline: 1 << 20,
    durationMs: options.deadlineMs,
    requests: 0,
    bytesPerConnection: HALF_CLOSE_BYTES,
  };
  const load = await runLoad(options, spec);
  const failures = loadFailures(load, 'the half-closing clients');
  const incomplete = load.counters.connectionsOpened - load.counters.connectionsCompleted;
  if (incomplete > 0) {
    failures.push(`${incomplete} connection(s) did not get every byte back and then the close`);
  }

  return {
    invariant: SCENARIOS['half-close'].invariant,
    failures,
    load,
    details: { bytesPerConnection: HALF_CLOSE_BYTES },
  };
}

async function handshakeStorm(options: ResolvedOptions): Promise<ScenarioOutcome> {
  const load = await runLoad(options, { ...specOf(options), mode: 'handshake' });
  const failures = loadFailures(load, 'the handshake storm');
  const failed = Object.values(load.errors).reduce((total, count) => total + count, 0);

  return {
    invariant: SCENARIOS['handshake-storm'].invariant,
    failures,
    load,
    details: { handshakes: load.counters.handshakes, failedConnections: failed },
  };
}

async function bigBulk(options: ResolvedOptions): Promise<ScenarioOutcome> {
  const spec: LoadSpec = {
    mode: 'bulk',
    connections: Math.min(options.connections, 4),
    size: 65_536,
    pipeline: 16,
    durationMs: options.deadlineMs,
    requests: 0,
    bytesPerConnection: BIG_BULK_BYTES,
  };
  const load = await runLoad(options, spec);
  const failures = loadFailures(load, 'the bulk clients');
  const expected = spec.connections * BIG_BULK_BYTES;
  if (load.counters.bytesReceived !== expected) {
    failures.push(`received ${load.counters.bytesReceived} of ${expected} verified bytes`);
  }

  return {
    invariant: SCENARIOS['big-bulk'].invariant,
    failures,
    load,
    details: { bytesPerConnection: BIG_BULK_BYTES },
  };
}

/**
 * Sends one garbage connection: resolves true when the server closes it within the idle timeout,
 * false when it stays open.
 */
function garbageClient(options: ResolvedOptions, payload: Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: options.host, port: options.port }, () => {
      socket.write(payload);
    });
    const timer = setTimeout(() => {
      resolve(false);
      socket.destroy();
    }, options.idleTimeoutMs);

    socket.resume();
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

async function garbage(options: ResolvedOptions): Promise<ScenarioOutcome> {
  const http = Buffer.from(
    `GET / HTTP/1.1\r\nHost: ${options.host}\r\nConnection: keep-alive\r\n\r\n`,
  );
  const random = Buffer.from(buildTable(options.seed).subarray(0, 4096));

  // The first byte is no TLS content type (RFC 8446 section 5.1: 20 to 24) and has the high
  // bit clear, so no server can take it for a record header or an SSLv2 hello and wait.
  random[0] = 0x01;

  const count = Math.max(4, Math.floor(options.connections / 2));
  const clients = Array.from({ length: count }, (_, i) =>
    garbageClient(options, i % 2 === 0 ? http : random),
  );
  const load = runLoad(options, specOf(options));

  const closed = await Promise.all(clients);
  const failures: string[] = [];
  const open = closed.filter((ok) => !ok).length;
  if (open > 0)
    failures.push(`${open} garbage connection(s) were still open after the idle timeout`);

  const result = await load;
  failures.push(...loadFailures(result, 'the good clients'));

  return {
    invariant: SCENARIOS.garbage.invariant,
    failures,
    load: result,
    details: { garbageConnections: count },
  };
}

/**
 * Runs one `openssl s_client` that sends KEY_UPDATE_LINES lines with a KeyUpdate between two of
 * them (`K` requests the server's update too, `k` does not: RFC 8446 section 4.6.3). Resolves with
 * a failure sentence, or undefined when every line came back.
 */
function keyUpdateClient(options: ResolvedOptions, index: number): Promise<string | undefined> {
  const args = ['s_client', '-connect', `${options.host}:${options.port}`, '-tls1_3', '-brief'];
  if (options.servername !== undefined) args.push('-servername', options.servername);
  if (options.caPem !== undefined) args.push('-verify_return_error');

  return new Promise((resolve) => {
    const child = spawn('openssl', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const lines = Array.from(
      { length: KEY_UPDATE_LINES },
      (_, n) => `shardtls-key-update-${options.seed}-${index}-${n}`,
    );
    let output = '';
    let next = 0;
    let updatesSent = 0;
    let finished = false;

    const finish = (failure: string | undefined): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      child.stdin.end('Q\n');
      child.kill();
      resolve(failure);
    };
    const timer = setTimeout(() => {
      finish(`key-update client ${index}: echo of line ${next} timed out`);
    }, options.idleTimeoutMs);

    // s_client takes a whole stdin read as one command, so the line after `K` or `k` is sent
    // only once s_client has printed KEYUPDATE for it.
    const step = (): void => {
      while (next < lines.length && output.includes(lines[next]!)) {
        next++;
        if (next === lines.length) return finish(undefined);
        updatesSent++;
        child.stdin.write(next % 2 === 1 ? 'K\n' : 'k\n');
      }
      if (output.split('KEYUPDATE').length - 1 >= updatesSent && !output.includes(lines[next]!)) {
        if (!sent.has(next)) {
          sent.add(next);
          child.stdin.write(`${lines[next]}\n`);
        }
      }
    };
    const sent = new Set<number>();

    const onOutput = (chunk: Buffer): void => {
      output += chunk.toString('latin1');
      step();
    };
    child.stdout.on('data', onOutput);
    child.stderr.on('data', onOutput);
    child.on('error', (error) => finish(`cannot run openssl s_client: ${error.message}`));
    child.on('exit', (code) => finish(`openssl s_client exited with ${code} after line ${next}`));
    child.stdin.on('error', () => {});
    step();
  });
}

async function keyUpdate(options: ResolvedOptions): Promise<ScenarioOutcome> {
  const count = Math.min(options.connections, 4);
  const clients = Array.from({ length: count }, (_, i) => keyUpdateClient(options, i));
  const load = runLoad(options, { ...specOf(options), mode: 'echo' });

  const failures = (await Promise.all(clients)).filter((failure) => failure !== undefined);
  const result = await load;
  failures.push(...loadFailures(result, 'the echo clients'));

  return {
    invariant: SCENARIOS['key-update'].invariant,
    failures,
    load: result,
    details: { keyUpdateClients: count, client: 'openssl s_client (K and k commands)' },
  };
}

/** Every scenario of `--scenario`, by name. */
export const SCENARIOS: Record<ScenarioName, Scenario> = {
  'slow-reader': {
    invariant:
      'clients that stop reading do not stall the others: the other clients complete verified ' +
      'echoes with no error, and with --stats-url the server RSS stays within --max-rss-growth',
    run: slowReader,
  },
  'abrupt-close': {
    invariant:
      'after clients vanish mid-transfer (TCP RST, or FIN without close_notify) the server ' +
      'accepts new connections and echoes verified bytes with no error',
    run: abruptClose,
  },
  'half-close': {
    invariant:
      'a client that ends its write side after sending 1 MiB gets every byte echoed back, ' +
      "then the server's close",
    run: halfClose,
  },
  'handshake-storm': {
    invariant:
      'every connect, handshake, exchange and close succeeds: failures are counted by kind ' +
      'and must be 0',
    run: handshakeStorm,
  },
  'key-update': {
    invariant:
      'openssl s_client clients that send TLS 1.3 KeyUpdate messages keep getting their lines ' +
      'echoed, while Node clients run a verified echo load with no error',
    run: keyUpdate,
  },
  garbage: {
    invariant:
      'the server closes connections that send plaintext HTTP or random bytes within the idle ' +
      'timeout, and good clients complete verified echoes with no error',
    run: garbage,
  },
  'big-bulk': {
    invariant:
      'up to 4 connections each stream 32 MiB both ways and get every byte back, verified, ' +
      'with no error',
    run: bigBulk,
  },
};
