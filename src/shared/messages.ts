/**
 * Every message between the main thread and a shard, typed in one place.
 *
 * Bytes never travel in these messages: connection bytes go through a shard's own socket
 * (direct transport) or through the SharedArrayBuffer rings (relay transport). The control plane
 * (stats, drain, stop, reload) is a comlink API on a dedicated MessagePort, described by
 * `ShardControl`; the worker's parent port carries only the small messages below.
 */
import type { MessagePort } from 'node:worker_threads';

import type { ServerOptions } from './config.js';

/** The transport that carries a connection's ciphertext between the main thread and a shard. */
export type TransportKind = 'direct' | 'relay';

/** The peer of a connection, as the main thread accepted it. */
export interface PeerAddress {
  address: string;
  port: number;
  family: string;
}

/** `workerData` of a shard. */
export interface ShardInit {
  shardId: number;
  options: ServerOptions;
  transport: TransportKind;
  /**
   * The secret that seals session tickets, the same in every shard so that a ticket resumes on
   * any of them. It lives as long as the server and survives certificate reloads.
   */
  ticketKeys: Uint8Array;
  /** Readable log lines instead of JSON: true when the main thread's stdout is a terminal. */
  prettyLogs: boolean;
  /** The comlink endpoint of the control plane. */
  control: MessagePort;
  /** Relay transport only: the ring the main thread writes (socket → shard). */
  rx?: SharedArrayBuffer;
  /** Relay transport only: the ring the shard writes (shard → socket). */
  tx?: SharedArrayBuffer;
}

/** Main → shard: open this duplicated descriptor as a connection (direct transport). */
export interface ConnectionMessage {
  type: 'connection';
  connId: number;
  fd: number;
  peer: PeerAddress;
}

export type MainToShard = ConnectionMessage;

/** Shard → main: contexts built and handler loaded; the shard takes connections now. */
export interface ReadyMessage {
  type: 'ready';
}

/** Shard → main: the shard cannot start (bad handler module, bad certificate). */
export interface StartFailedMessage {
  type: 'start-failed';
  message: string;
}

/** Shard → main: `count` connections closed since the last message (least-connections balance). */
export interface ClosedMessage {
  type: 'closed';
  count: number;
}

export type ShardToMain = ReadyMessage | StartFailedMessage | ClosedMessage;

/** Counters of one shard. */
export interface ShardStats {
  shardId: number;
  transport: TransportKind;
  connectionsOpen: number;
  connectionsTotal: number;
  handshakesDone: number;
  handshakesFailed: number;
  /** Ciphertext bytes received from clients. */
  bytesIn: number;
  /** Ciphertext bytes sent to clients. */
  bytesOut: number;
  detachedFlushesRunning: number;
  detachedFlushesTotal: number;
  handlerErrors: number;
  /** Relay transport: bytes in use over capacity of the rx and tx rings (0 for direct). */
  ringRxUsed: number;
  ringTxUsed: number;
  ringCapacity: number;
  /** `process.memoryUsage()` is per process, so a shard reports its own heap only. */
  heapUsed: number;
}

/** The control plane a shard exposes with comlink. */
export interface ShardControl {
  stats(): ShardStats;
  /**
   * Stops taking new work and lets every connection finish: pending data is flushed, close_notify
   * is sent, and the socket closes. Resolves when all connections are closed or `deadlineMs`
   * passes; then the remaining ones are closed at once. Resolves to the number closed by force.
   */
  drain(deadlineMs: number): Promise<number>;
  /** Rebuilds the TLS contexts from new certificate options; open connections keep theirs. */
  reload(tls: ServerOptions['tls']): void;
}
