/**
 * The main-thread side of the relay transport: one RelayPump per shard.
 *
 * The pump keeps each accepted net.Socket and only moves ciphertext: socket → rx ring → shard,
 * and shard → tx ring → socket. It never parses what it moves.
 *
 * Flow control (see credit.ts), per connection and direction:
 * - rx: the pump sends at most the rx window before the shard grants CREDIT. A socket out of
 *   credit is paused and resumes when CREDIT arrives.
 * - tx: the shard sends at most the tx window, and the pump grants it back as `socket.write`
 *   flushes to the kernel. So a client that stops reading keeps at most one window here.
 * When the rx ring itself is full, records wait in a per-shard queue, in order, and the sockets
 * that fed it are paused until the ring has room. The queue is bounded because every DATA in it
 * was within its connection's credit.
 */
import type net from 'node:net';

import { ReceiveWindow, SendCredit, checkWindow } from '../shared/credit.js';
import {
  CLOSE_NORMAL,
  CLOSE_RESET,
  DEFAULT_WINDOW,
  KIND_CLOSE,
  KIND_CREDIT,
  KIND_DATA,
  KIND_END,
  KIND_OPEN,
  MAX_RECORD_PAYLOAD,
  OPEN_MAX_PAYLOAD,
  encodeOpenPayload,
} from '../shared/layout.js';
import { closeAfterPeer } from '../shared/linger.js';
import { RingReader, RingWriter, copyBytes } from '../shared/ring.js';

/** Options of a RelayPump. */
export interface RelayPumpOptions {
  /**
   * Window in bytes of each connection in each direction, unless `rxWindow` or `txWindow` sets
   * one direction. Default DEFAULT_WINDOW (64 KiB).
   */
  creditBytes?: number;
  /** Bytes the pump may send to the shard per connection before the shard grants CREDIT. */
  rxWindow?: number;
  /** Bytes the shard may send per connection before the pump grants CREDIT. */
  txWindow?: number;
}

/** Counters of a RelayPump. Byte counts are payload bytes. */
export interface RelayStats {
  /** Connections open in the pump now. */
  connections: number;
  /** Connections the shard closed whose sockets still wait for the client's FIN. */
  lingering: number;
  /** Connections added since the pump started. */
  opened: number;
  /** Bytes moved socket → rx ring. */
  rxBytes: number;
  /** Bytes moved tx ring → socket. */
  txBytes: number;
  /** Bytes in use in the rx ring (main → shard). */
  rxRingUsed: number;
  /** Bytes in use in the tx ring (shard → main). */
  txRingUsed: number;
  /** Data region size of each ring. */
  ringCapacity: number;
  /** Records waiting in the pump's queue for room in the rx ring. */
  queuedRecords: number;
  /** Payload bytes waiting in that queue. */
  queuedBytes: number;
  /** Times a socket was paused because its rx credit ran out. */
  creditStalls: number;
  /** Times the rx ring was full when the pump wrote to it. */
  ringStalls: number;
}

/** Per-connection figures, for tests and diagnostics. */
export interface RelayConnectionStats {
  /** Bytes the pump may still send to the shard before a CREDIT. */
  rxCredit: number;
  /** Bytes read from the socket and not yet written to the ring (out of credit or ring full). */
  rxHeld: number;
  /** Bytes written to the socket that it has not yet flushed to the kernel. */
  txBuffered: number;
  /** The tx window of the connection. */
  txWindow: number;
}

// Reasons a socket is paused, as bits, so it resumes only when all are gone.
const PAUSED_FOR_CREDIT = 1;
const PAUSED_FOR_RING = 2;

/** One relayed connection on the main side. */
class Relayed {
  readonly id: number;
  readonly socket: net.Socket;
  readonly rxCredit: SendCredit;
  readonly txWindow: ReceiveWindow;
  /** Bytes passed to socket.write, and how many of them were granted back. */
  txWritten = 0;
  txGranted = 0;
  /** A socket chunk (and the offset into it) that waits for rx credit. */
  held: Buffer | null = null;
  heldOffset = 0;
  /** Bytes of this connection in the pump's queue. */
  queuedBytes = 0;
  paused = 0;
  rxEnded = false;
  txEnded = false;
  /** The socket closed cleanly while bytes were still held; CLOSE follows those bytes. */
  closing = false;
  /** Prebound socket.write callback that grants tx credit as bytes reach the kernel. */
  onFlushed: () => void = () => {};

  constructor(id: number, socket: net.Socket, rxWindow: number, txWindow: number) {
    this.id = id;
    this.socket = socket;
    this.rxCredit = new SendCredit(rxWindow);
    this.txWindow = new ReceiveWindow(txWindow);
  }
}

/** A record that waits for room in the rx ring. */
interface QueuedRecord {
  conn: Relayed;
  kind: number;
  arg: number;
  bytes: Uint8Array | null;
  offset: number;
  length: number;
}

/** Moves the bytes of one shard's relayed connections between their sockets and the rings. */
export class RelayPump {
  private readonly writer: RingWriter;
  private readonly reader: RingReader;
  private readonly rxWindow: number;
  private readonly txWindow: number;
  private readonly connections = new Map<number, Relayed>();
  private readonly openPayload = new Uint8Array(OPEN_MAX_PAYLOAD);

  private readonly queue: QueuedRecord[] = [];
  private queueHead = 0;
  private readonly pausedForRing: Relayed[] = [];
  private waitingForRoom = false;
  private nextId = 1;
  private closed = false;
  /** Closes of sockets that the shard ended and that still wait for the client's FIN. */
  private readonly lingering = new Set<Promise<void>>();

  private opened = 0;
  private rxBytes = 0;
  private txBytes = 0;
  private queuedBytes = 0;
  private creditStalls = 0;
  private ringStalls = 0;

  /**
   * Starts a pump that writes `rx` (main → shard) and reads `tx` (shard → main), two rings made
   * by `createRingBuffer`. Throws a TypeError when either is not a ring, or a RangeError when a
   * window is out of range.
   */
  constructor(rx: SharedArrayBuffer, tx: SharedArrayBuffer, options: RelayPumpOptions = {}) {
    const window = options.creditBytes ?? DEFAULT_WINDOW;
    this.rxWindow = checkWindow(options.rxWindow ?? window, 'rxWindow');
    this.txWindow = checkWindow(options.txWindow ?? window, 'txWindow');
    this.writer = new RingWriter(rx);
    this.reader = new RingReader(tx);
    this.reader.start(this.onRecord);
  }

  /**
   * Takes over `socket`: assigns it a connection id, sends OPEN with its peer address, and
   * relays its bytes until either side closes it. The pump sets `allowHalfOpen` on the socket,
   * so the client's FIN becomes END and the shard decides when to end its own side.
   *
   * Returns the connection id. Throws an Error after `close`.
   */
  add(socket: net.Socket): number {
    if (this.closed) throw new Error('relay pump is closed');

    const id = this.allocateId();
    const conn = new Relayed(id, socket, this.rxWindow, this.txWindow);
    conn.onFlushed = () => this.grantTx(conn);
    this.connections.set(id, conn);
    this.opened++;

    const length = encodeOpenPayload(this.openPayload, {
      address: socket.remoteAddress ?? '',
      port: socket.remotePort ?? 0,
      family: socket.remoteFamily ?? '',
      rxWindow: this.rxWindow,
      txWindow: this.txWindow,
    });
    // The OPEN payload buffer is reused, so a queued OPEN keeps its own copy.
    this.writeRecord(conn, KIND_OPEN, 0, this.openPayload, 0, length, true);

    socket.allowHalfOpen = true;
    socket.on('data', (chunk: Buffer) => this.onSocketData(conn, chunk));
    socket.on('end', () => this.onSocketEnd(conn));
    socket.on('error', () => {}); // 'close' follows with hadError, which sends CLOSE.
    socket.on('close', (hadError: boolean) => this.onSocketClose(conn, hadError));
    return id;
  }

  /** Resolves once every socket the shard ended has closed (each within LINGER_MS). */
  async whenLingerDone(): Promise<void> {
    await Promise.all([...this.lingering]);
  }

  /** Returns the pump's counters and the occupancy of its rings. */
  stats(): RelayStats {
    return {
      connections: this.connections.size,
      lingering: this.lingering.size,
      opened: this.opened,
      rxBytes: this.rxBytes,
      txBytes: this.txBytes,
      rxRingUsed: this.writer.usedBytes(),
      txRingUsed: this.reader.usedBytes(),
      ringCapacity: this.writer.capacity,
      queuedRecords: this.queue.length - this.queueHead,
      queuedBytes: this.queuedBytes,
      creditStalls: this.creditStalls,
      ringStalls: this.ringStalls,
    };
  }

  /** Returns the figures of connection `id`, or undefined when it is no longer open. */
  connectionStats(id: number): RelayConnectionStats | undefined {
    const conn = this.connections.get(id);
    if (conn === undefined) return undefined;
    const held = conn.held === null ? 0 : conn.held.byteLength - conn.heldOffset;
    return {
      rxCredit: conn.rxCredit.available,
      rxHeld: held + conn.queuedBytes,
      txBuffered: conn.socket.writableLength,
      txWindow: conn.txWindow.window,
    };
  }

  /**
   * Stops the pump: destroys every open socket and stops reading the tx ring. No record is
   * sent, so the caller closes the shard's endpoint too.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.reader.stop();
    this.writer.close();
    const connections = [...this.connections.values()];
    this.connections.clear();
    for (const conn of connections) conn.socket.destroy();
    this.queue.length = 0;
    this.queueHead = 0;
    this.queuedBytes = 0;
  }

  /** Returns an id no open connection uses; ids wrap at 2^32 and 0 is never used. */
  private allocateId(): number {
    let id = this.nextId;
    while (id === 0 || this.connections.has(id)) id = (id + 1) >>> 0;
    this.nextId = (id + 1) >>> 0;
    return id;
  }

  // ---- socket → rx ring ----

  private onSocketData(conn: Relayed, chunk: Buffer): void {
    if (this.connections.get(conn.id) !== conn) return;
    if (conn.held !== null) {
      // Only when 'data' fires after pause(). Appending keeps the byte order.
      conn.held = Buffer.concat([conn.held.subarray(conn.heldOffset), chunk]);
      conn.heldOffset = 0;
      return;
    }
    this.pushData(conn, chunk, 0);
  }

  /** Writes `chunk` from `offset` as DATA while credit lasts, and holds the rest. */
  private pushData(conn: Relayed, chunk: Buffer, offset: number): void {
    while (offset < chunk.byteLength) {
      const n = Math.min(chunk.byteLength - offset, conn.rxCredit.available, MAX_RECORD_PAYLOAD);
      if (n === 0) {
        conn.held = chunk;
        conn.heldOffset = offset;
        this.creditStalls++;
        this.pause(conn, PAUSED_FOR_CREDIT);
        return;
      }
      conn.rxCredit.spend(n);
      this.rxBytes += n;
      this.writeRecord(conn, KIND_DATA, 0, chunk, offset, n, false);
      offset += n;
    }
    conn.held = null;
    conn.heldOffset = 0;
  }

  private onSocketEnd(conn: Relayed): void {
    if (this.connections.get(conn.id) !== conn) return;
    conn.rxEnded = true;
    // Bytes held for credit go first, and END follows once they are written.
    if (conn.held === null) this.writeRecord(conn, KIND_END, 0, null, 0, 0, false);
  }

  private onSocketClose(conn: Relayed, hadError: boolean): void {
    if (this.connections.get(conn.id) !== conn) return;

    // A clean close can come while bytes still wait for credit: they go to the shard first.
    if (!hadError && conn.held !== null) {
      conn.closing = true;
      return;
    }
    this.finishClose(conn, hadError);
  }

  /** Forgets a closed socket and sends CLOSE, normal when both directions ended cleanly. */
  private finishClose(conn: Relayed, hadError: boolean): void {
    this.connections.delete(conn.id);
    conn.held = null;
    const normal = !hadError && conn.rxEnded && conn.txEnded;
    this.writeRecord(conn, KIND_CLOSE, normal ? CLOSE_NORMAL : CLOSE_RESET, null, 0, 0, false);
  }

  /**
   * Writes a record to the rx ring, or queues it (in order behind records already queued) when
   * the ring is full. `copy` makes a queued record keep its own copy of the payload.
   */
  private writeRecord(
    conn: Relayed,
    kind: number,
    arg: number,
    bytes: Uint8Array | null,
    offset: number,
    length: number,
    copy: boolean,
  ): void {
    if (this.closed) return;
    if (this.queueHead === this.queue.length) {
      if (this.writer.tryWrite(conn.id, kind, arg, bytes, offset, length)) return;
      this.ringStalls++;
    }

    if (copy && bytes !== null) {
      bytes = bytes.slice(offset, offset + length);
      offset = 0;
    }
    this.queue.push({ conn, kind, arg, bytes, offset, length });
    this.queuedBytes += length;
    conn.queuedBytes += length;
    if (kind === KIND_DATA) this.pause(conn, PAUSED_FOR_RING);
    this.waitForRoom();
  }

  private waitForRoom(): void {
    if (this.waitingForRoom || this.closed) return;
    this.waitingForRoom = true;
    this.writer.waitWritable(this.onRoom);
  }

  /** Writes queued records while the ring has room, then resumes the sockets that fed them. */
  private readonly onRoom = (): void => {
    this.waitingForRoom = false;
    const queue = this.queue;
    while (this.queueHead < queue.length) {
      const record = queue[this.queueHead];
      const { conn, kind, arg, bytes, offset, length } = record;
      if (!this.writer.tryWrite(conn.id, kind, arg, bytes, offset, length)) {
        this.waitForRoom();
        return;
      }
      this.queueHead++;
      this.queuedBytes -= length;
      conn.queuedBytes -= length;
    }

    queue.length = 0;
    this.queueHead = 0;
    const paused = this.pausedForRing.splice(0, this.pausedForRing.length);
    for (const conn of paused) this.unpause(conn, PAUSED_FOR_RING);
  };

  private pause(conn: Relayed, reason: number): void {
    if ((conn.paused & reason) !== 0) return;
    if (reason === PAUSED_FOR_RING) this.pausedForRing.push(conn);
    if (conn.paused === 0) conn.socket.pause();
    conn.paused |= reason;
  }

  private unpause(conn: Relayed, reason: number): void {
    if ((conn.paused & reason) === 0) return;
    conn.paused &= ~reason;
    if (conn.paused === 0 && this.connections.get(conn.id) === conn) conn.socket.resume();
  }

  // ---- tx ring → socket ----

  private readonly onRecord = (
    connId: number,
    kind: number,
    arg: number,
    bytes: Uint8Array,
    offset: number,
    length: number,
  ): void => {
    const conn = this.connections.get(connId);
    if (conn === undefined) return; // A record that crossed our CLOSE: the connection is gone.

    if (kind === KIND_DATA) {
      this.writeSocket(conn, bytes, offset, length);
    } else if (kind === KIND_CREDIT) {
      this.grantRx(conn, arg);
    } else if (kind === KIND_END) {
      conn.txEnded = true;
      conn.socket.end();
    } else if (kind === KIND_CLOSE) {
      this.closeFromShard(conn, arg);
    }
  };

  private writeSocket(conn: Relayed, bytes: Uint8Array, offset: number, length: number): void {
    if (length === 0 || conn.txEnded) return;
    if (!conn.txWindow.receive(length)) {
      // The shard sent beyond the window: a broken shard, so drop the connection.
      this.closeFromShard(conn, CLOSE_RESET);
      this.writeRecord(conn, KIND_CLOSE, CLOSE_RESET, null, 0, 0, false);
      return;
    }

    // socket.write keeps the buffer until the kernel takes it, so it needs its own copy.
    const copy = Buffer.allocUnsafe(length);
    copyBytes(bytes, offset, copy, 0, length);
    this.txBytes += length;
    conn.txWritten += length;
    conn.socket.write(copy, conn.onFlushed);
  }

  /** Grants tx credit for the bytes the socket has flushed, once half a window is ready. */
  private grantTx(conn: Relayed): void {
    if (this.connections.get(conn.id) !== conn) return;
    const flushed = conn.txWritten - conn.socket.writableLength;
    const fresh = flushed - conn.txGranted;
    if (fresh <= 0) return;
    conn.txGranted = flushed;
    const grant = conn.txWindow.consume(fresh);
    if (grant > 0) this.writeRecord(conn, KIND_CREDIT, grant, null, 0, 0, false);
  }

  private grantRx(conn: Relayed, bytes: number): void {
    conn.rxCredit.grant(bytes);
    if (conn.held !== null) {
      this.pushData(conn, conn.held, conn.heldOffset);
      if (conn.held !== null) return;
      if (conn.rxEnded) this.writeRecord(conn, KIND_END, 0, null, 0, 0, false);
      if (conn.closing) {
        this.finishClose(conn, false);
        return;
      }
    }
    this.unpause(conn, PAUSED_FOR_CREDIT);
  }

  /** Ends or destroys the socket after the shard's CLOSE, and removes the connection. */
  private closeFromShard(conn: Relayed, reason: number): void {
    this.connections.delete(conn.id);
    conn.held = null;
    const socket = conn.socket;
    if (reason !== CLOSE_NORMAL) {
      socket.destroy();
      return;
    }

    // After the shard's END: the bytes already written reach the client, then FIN, and the
    // socket drops input until the client's FIN, so the client never meets a reset.
    const closed = closeAfterPeer(socket);
    this.lingering.add(closed);
    void closed.then(() => this.lingering.delete(closed));
  }
}
