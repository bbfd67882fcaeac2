/**
 * The shard pool: N worker threads, each a proactor that runs the TLS connections given to it.
 *
 * The pool starts the shards, hands each accepted connection to one of them (round-robin or
 * least-connections), restarts a shard that dies, and speaks to them through the comlink control
 * plane. Shards are long-lived actors with pinned connections, so the pool manages its own
 * workers instead of a task pool.
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { MessageChannel, Worker } from 'node:worker_threads';

import * as Comlink from 'comlink';
import type { Logger } from 'pino';

import { portEndpoint } from '../shared/comlink-port.js';
import type { ServerOptions, TlsOptions } from '../shared/config.js';
import type {
  PeerAddress,
  ShardControl,
  ShardInit,
  ShardStats,
  ShardToMain,
  TransportKind,
} from '../shared/messages.js';
import { Ring } from '../shared/ring.js';
import { TICKET_KEYS_BYTES } from '../tls/context.js';
import { fdAddon, socketFd } from './fd.js';
import { RelayPump } from './relay.js';

const SHARD_ENTRY = new URL('../worker/shard.js', import.meta.url);

/** Delay before a shard that died is started again, doubled per restart of it up to the cap. */
const RESTART_DELAY_MS = 100;
const RESTART_DELAY_MAX_MS = 5_000;

/** One worker thread and the main thread's record of it. */
class Shard {
  worker!: Worker;
  /** The control plane of the running worker; null between its exit and its restart. */
  control: Comlink.Remote<ShardControl> | null = null;
  pump: RelayPump | null = null;
  /** Connections handed to this shard and not yet reported closed. */
  open = 0;
  ready = false;
  restarts = 0;

  constructor(readonly id: number) {}
}

/** Events: `'shard-exit'` (shardId, exitCode), `'shard-ready'` (shardId). */
export class ShardPool extends EventEmitter {
  readonly transport: TransportKind;

  private readonly shards: Shard[] = [];
  private readonly log: Logger;
  private readonly ticketKeys = new Uint8Array(randomBytes(TICKET_KEYS_BYTES));
  private options: ServerOptions;
  private nextShard = 0;
  private nextConnId = 1;
  private stopping = false;

  constructor(options: ServerOptions, log: Logger) {
    super();
    this.options = options;
    this.log = log;
    this.transport = pickTransport(options.transport, log);
  }

  /** Connections open across every shard. */
  get openConnections(): number {
    let open = 0;
    for (const shard of this.shards) open += shard.open;
    return open;
  }

  /**
   * Starts every shard and resolves once all report ready. Rejects with the first shard's reason
   * when one cannot start (a handler module that does not load, a certificate its engine rejects).
   */
  async start(): Promise<void> {
    const starts: Promise<void>[] = [];
    for (let id = 0; id < this.options.shards; id++) {
      const shard = new Shard(id);
      this.shards.push(shard);
      starts.push(this.spawn(shard));
    }

    try {
      await Promise.all(starts);
    } catch (err) {
      await this.terminate();
      throw err;
    }
  }

  /**
   * Hands an accepted socket (paused, nothing read yet) to a shard. Returns false when no shard
   * is ready, or the descriptor could not be duplicated; the socket is then destroyed here.
   */
  dispatch(socket: Socket): boolean {
    const shard = this.pick();
    if (shard === null) {
      socket.destroy();
      return false;
    }

    if (shard.pump !== null) {
      shard.pump.add(socket);
      socket.resume(); // accepted with pauseOnConnect: reading starts once the pump owns it
      shard.open++;
      return true;
    }

    const peer: PeerAddress = {
      address: socket.remoteAddress ?? '',
      port: socket.remotePort ?? 0,
      family: socket.remoteFamily ?? '',
    };

    // Direct: the shard gets its own descriptor, and this thread's copy closes at once.
    let fd: number;
    try {
      fd = fdAddon()!.dupFd(socketFd(socket));
    } catch (err) {
      this.log.error({ err: (err as Error).message, peer: peer.address }, 'cannot pass connection');
      socket.destroy();
      return false;
    }
    socket.destroy();
    const connId = this.nextConnId++;
    shard.worker.postMessage({ type: 'connection', connId, fd, peer });
    shard.open++;
    return true;
  }

  /** Counters of every ready shard; a shard that does not respond within 2 s is left out. */
  async stats(): Promise<ShardStats[]> {
    const ready = this.shards.filter((shard) => shard.ready);
    const answers = await Promise.all(
      ready.map((shard) => withTimeout(shard.control!.stats(), 2_000).catch(() => null)),
    );
    return answers.filter((stats): stats is ShardStats => stats !== null);
  }

  /** Returns the number of shard restarts since the pool started. */
  restarts(): number {
    return this.shards.reduce((sum, shard) => sum + shard.restarts, 0);
  }

  /** Sends new TLS options to every shard; new handshakes use them, open connections keep theirs. */
  async reload(tls: TlsOptions): Promise<void> {
    this.options = { ...this.options, tls };
    await Promise.all(this.shards.filter((s) => s.ready).map((s) => s.control!.reload(tls)));
  }

  /**
   * Drains every shard within `deadlineMs` (pending data, then close_notify, then close), then
   * stops the workers. Resolves to the number of connections closed by force.
   */
  async drain(deadlineMs: number): Promise<number> {
    this.stopping = true;
    const forced = await Promise.all(
      this.shards
        .filter((shard) => shard.ready)
        .map((shard) => withTimeout(shard.control!.drain(deadlineMs), deadlineMs + 2_000)),
    ).catch(() => [] as number[]);

    // Relayed sockets close in this thread, each waiting at most LINGER_MS for the client's FIN.
    await Promise.all(this.shards.map((shard) => shard.pump?.whenLingerDone()));
    await this.terminate();
    return forced.reduce((sum, n) => sum + n, 0);
  }

  /** Stops every worker at once; their connections close with them. */
  async terminate(): Promise<void> {
    this.stopping = true;
    await Promise.all(
      this.shards.map(async (shard) => {
        shard.ready = false;
        shard.pump?.close();
        shard.pump = null;
        releaseControl(shard);
        await shard.worker?.terminate();
      }),
    );
  }

  private pick(): Shard | null {
    const count = this.shards.length;

    if (this.options.balance === 'least-connections') {
      let best: Shard | null = null;
      for (const shard of this.shards) {
        if (shard.ready && (best === null || shard.open < best.open)) best = shard;
      }
      return best;
    }

    for (let i = 0; i < count; i++) {
      const shard = this.shards[this.nextShard];
      this.nextShard = (this.nextShard + 1) % count;
      if (shard.ready) return shard;
    }
    return null;
  }

  private spawn(shard: Shard): Promise<void> {
    const channel = new MessageChannel();
    const init: ShardInit = {
      shardId: shard.id,
      options: this.options,
      transport: this.transport,
      ticketKeys: this.ticketKeys,
      prettyLogs: process.stdout.isTTY === true,
      control: channel.port2,
    };

    if (this.transport === 'relay') {
      init.rx = Ring.create(this.options.ringBytes);
      init.tx = Ring.create(this.options.ringBytes);
      shard.pump = new RelayPump(init.rx, init.tx, { creditBytes: this.options.creditBytes });
    }

    shard.worker = new Worker(SHARD_ENTRY, { workerData: init, transferList: [channel.port2] });
    shard.control = Comlink.wrap<ShardControl>(portEndpoint(channel.port1));
    shard.open = 0;

    return new Promise((resolve, reject) => {
      let started = false;

      shard.worker.on('message', (message: ShardToMain) => {
        if (message.type === 'closed') {
          shard.open = Math.max(0, shard.open - message.count);
        } else if (message.type === 'ready') {
          started = true;
          shard.ready = true;
          this.log.info({ shard: shard.id, transport: this.transport }, 'shard started');
          this.emit('shard-ready', shard.id);
          resolve();
        } else if (message.type === 'start-failed') {
          reject(new Error(message.message));
        }
      });

      shard.worker.on('error', (err) => {
        this.log.error({ shard: shard.id, err: err.message }, 'shard failed');
        if (!started) reject(err);
      });

      shard.worker.on('exit', (code) => {
        shard.ready = false;
        if (!started || this.stopping) return;
        this.onExit(shard, code);
      });
    });
  }

  /** Restarts a shard that died; its connections are gone and the other shards go on. */
  private onExit(shard: Shard, code: number): void {
    const lost = shard.open;
    shard.pump?.close();
    shard.pump = null;
    releaseControl(shard);
    shard.restarts++;
    this.log.error({ shard: shard.id, exitCode: code, lost }, 'shard exited; restarting it');
    this.emit('shard-exit', shard.id, code);

    const delay = Math.min(
      RESTART_DELAY_MS * 2 ** Math.min(shard.restarts - 1, 6),
      RESTART_DELAY_MAX_MS,
    );
    setTimeout(() => {
      if (this.stopping) return;
      this.spawn(shard).catch((err: Error) => {
        this.log.error({ shard: shard.id, err: err.message }, 'shard restart failed');
      });
    }, delay).unref();
  }
}

function releaseControl(shard: Shard): void {
  shard.control?.[Comlink.releaseProxy]();
  shard.control = null;
}

/** Chooses the transport: direct needs descriptor duplication, relay works everywhere. */
function pickTransport(requested: TransportKind, log: Logger): TransportKind {
  if (requested === 'relay') return 'relay';
  if (fdAddon() !== null) return 'direct';
  log.warn('descriptor passing is not available on this platform; using the relay transport');
  return 'relay';
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no response within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
