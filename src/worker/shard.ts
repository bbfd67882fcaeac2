/**
 * The entry of a shard: a worker thread whose event loop runs the TLS connections given to it.
 *
 * At start it builds its TLS contexts, loads the handler and reports `ready` (or `start-failed`
 * with a one-line reason). Then it takes connections from its transport: descriptors posted
 * by the main thread (direct) or OPEN records on its rx ring (relay). The control plane (stats,
 * drain, reload) is a comlink API on the port in `workerData.control`.
 */
import net from 'node:net';
import { parentPort, workerData } from 'node:worker_threads';

import * as Comlink from 'comlink';

import { portEndpoint } from '../shared/comlink-port.js';

import type { TlsOptions } from '../shared/config.js';
import { createLogger } from '../shared/log.js';
import type {
  MainToShard,
  PeerAddress,
  ShardControl,
  ShardInit,
  ShardStats,
  ShardToMain,
} from '../shared/messages.js';
import type { TlsEngine } from '../tls/engine.js';
import { ConnectionHost, type CountingUpstream, errorText } from './connections.js';
import { loadHandler } from './handlers/load.js';
import { NetUpstream } from './net-upstream.js';
import { RingEndpoint } from './ring-socket.js';
import { ServerTls } from './server-tls.js';

const init = workerData as ShardInit;
const port = parentPort;
if (port === null) throw new Error('shard.js runs as a worker thread of the shard pool');

const log = createLogger({ level: init.options.logLevel, pretty: init.prettyLogs }).child({
  shard: init.shardId,
});

function post(message: ShardToMain): void {
  port!.postMessage(message);
}

async function start(): Promise<void> {
  // 1. TLS contexts and the handler: a failure here stops the server before it listens.
  const tls = new ServerTls(init.options.tls, init.ticketKeys);
  const handler = await loadHandler(init.options.handler);
  const host = new ConnectionHost(init.shardId, init.transport, init.options, handler, log);
  host.onClosed = (count) => post({ type: 'closed', count });

  const serve = (connId: number, upstream: CountingUpstream, peer: PeerAddress) => {
    let engine: TlsEngine;
    try {
      engine = tls.newEngine();
    } catch (err) {
      // Out of memory inside OpenSSL, most likely: this connection fails, the shard goes on.
      log.error({ conn: connId, err: errorText(err) }, 'cannot create a TLS engine; closing');
      upstream.close();
      post({ type: 'closed', count: 1 });
      return;
    }
    void host.serve(connId, upstream, engine, peer);
  };

  // 2. The transport.
  let ring: RingEndpoint | null = null;
  if (init.transport === 'relay') {
    ring = new RingEndpoint(init.rx!, init.tx!, {
      creditBytes: init.options.creditBytes,
      onOpen: (socket, peer) => serve(socket.connId, socket, peer),
    });
  }

  // The parent port stays referenced, so the shard lives until the pool stops it even when its
  // only other wake-ups are the rings' Atomics.waitAsync.
  port!.on('message', (message: MainToShard) => {
    if (message.type !== 'connection') return;
    const socket = new net.Socket({
      fd: message.fd,
      allowHalfOpen: true,
      readable: true,
      writable: true,
    });
    socket.setNoDelay(true);
    serve(message.connId, new NetUpstream(socket), message.peer);
  });

  // 3. The control plane.
  const control: ShardControl = {
    stats(): ShardStats {
      const stats = host.stats();
      if (ring !== null) {
        const rings = ring.occupancy();
        stats.ringRxUsed = rings.rxUsed;
        stats.ringTxUsed = rings.txUsed;
        stats.ringCapacity = rings.capacity;
      }
      return stats;
    },
    async drain(deadlineMs: number): Promise<number> {
      log.info({ open: host.size, deadlineMs }, 'draining');
      const forced = await host.drain(deadlineMs);
      await host.flushes.idle();
      log.info({ forced }, 'drained');
      return forced;
    },
    reload(options: TlsOptions): void {
      tls.reload(options);
      log.info({ certificates: options.certs.length }, 'TLS contexts reloaded');
    },
  };
  Comlink.expose(control, portEndpoint(init.control));

  post({ type: 'ready' });
}

start().catch((err: unknown) => {
  post({ type: 'start-failed', message: errorText(err) });
});
