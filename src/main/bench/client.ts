import net from 'node:net';
import tls from 'node:tls';
import { performance } from 'node:perf_hooks';
import * as hdr from 'hdr-histogram-js';
import { buildTable, expectedByte, nextSeed, slice, startOf, verify } from './pattern.js';
import type { ClientTarget, Counters, MismatchReport, WorkerTask } from './types.js';
import { emptyCounters } from './types.js';

/** Highest latency the histograms track, in microseconds (10 minutes). */
const MAX_LATENCY_US = 600_000_000;

/** Mismatches kept per task; later ones are only counted. */
const MAX_MISMATCH_REPORTS = 16;

/** Makes the latency histogram used by every part of a run (microseconds, 3 digits). */
export function newHistogram(): hdr.Histogram {
  return hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: MAX_LATENCY_US,
    numberOfSignificantValueDigits: 3,
  });
}

/** Builds the options of `tls.connect` for a target; `session` resumes an earlier session. */
export function connectOptions(target: ClientTarget, session?: Buffer): tls.ConnectionOptions {
  const version = target.tlsVersion === '1.2' ? 'TLSv1.2' : 'TLSv1.3';
  const options: tls.ConnectionOptions = {
    host: target.host,
    port: target.port,
    servername: net.isIP(target.servername ?? target.host) ? undefined : target.servername,
    rejectUnauthorized: !target.insecure,
    ca: target.ca,
    session,
  };

  if (target.servername !== undefined) {
    options.checkServerIdentity = (_host, cert) =>
      tls.checkServerIdentity(target.servername!, cert);
  }

  if (target.tlsVersion !== undefined) {
    options.minVersion = version;
    options.maxVersion = version;
  }

  return options;
}

/**
 * Sorts a client error into a kind for the summary: `connect` (TCP refused or unreachable),
 * `handshake` (failed before the TLS handshake finished), `reset`, `tls` (a TLS error after the
 * handshake) or `other`.
 */
export function errorKind(error: NodeJS.ErrnoException, handshakeDone: boolean): string {
  const code = error.code ?? '';

  if (code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'EADDRNOTAVAIL') {
    return 'connect';
  }
  if (!handshakeDone) return 'handshake';
  if (code === 'ECONNRESET' || code === 'EPIPE') return 'reset';
  if (code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS')) return 'tls';
  return 'other';
}

/**
 * The load of one thread: connections driven in the chosen mode, with shared counters, a
 * latency histogram and error counts. A piscina task uses one; scenarios use them in the main
 * thread too.
 */
export class LoadRun {
  readonly counters: Counters = emptyCounters();
  readonly errors: Record<string, number> = {};
  readonly errorSamples: Record<string, string> = {};
  readonly mismatches: MismatchReport[] = [];
  readonly histogram = newHistogram();

  private readonly table: Buffer;
  private readonly sockets = new Set<tls.TLSSocket>();
  private issued = 0;
  private stopped = false;
  private connectionCount = 0;
  private readonly startedAt = performance.now();

  constructor(readonly task: WorkerTask) {
    this.table = buildTable(nextSeed(task.seed ^ Math.imul(task.workerIndex + 1, 0x9e3779b1)));
  }

  /** Milliseconds since the run started. */
  elapsedMs(): number {
    return performance.now() - this.startedAt;
  }

  /** Counts one error of a kind and keeps its first message. */
  fail(kind: string, message: string): void {
    this.errors[kind] = (this.errors[kind] ?? 0) + 1;
    if (this.errorSamples[kind] === undefined) this.errorSamples[kind] = message;
  }

  /** Total errors of every kind. */
  errorCount(): number {
    let total = 0;
    for (const kind in this.errors) total += this.errors[kind]!;
    return total;
  }

  /**
   * Runs the task: opens `connections` clients and drives them until the duration ends, the
   * request budget is spent or the deadline passes. Resolves when every socket has closed; it
   * never rejects (failures are counted in `errors`).
   */
  async run(): Promise<void> {
    const { task } = this;
    const stopTimer =
      task.requests > 0 ? undefined : setTimeout(() => this.stop(), task.durationMs);
    const deadline = setTimeout(() => this.abort(), task.deadlineMs);

    const loops: Promise<void>[] = [];
    for (let i = 0; i < task.connections; i++) {
      loops.push(task.mode === 'handshake' ? this.handshakeLoop() : this.streamConnection());
    }
    await Promise.all(loops);

    clearTimeout(stopTimer);
    clearTimeout(deadline);
  }

  /** Stops issuing requests: connections finish what is in flight and close. */
  stop(): void {
    this.stopped = true;
  }

  /** Destroys every open socket, counting each as a `timeout` (the hard deadline passed). */
  abort(): void {
    this.stopped = true;
    for (const socket of this.sockets) {
      this.fail('timeout', 'run deadline passed with the connection still open');
      socket.destroy();
    }
  }

  /** Reserves one request from the budget; false once the run is stopping. */
  private take(): boolean {
    if (this.stopped) return false;
    if (this.task.requests > 0) {
      if (this.issued >= this.task.requests) return false;
      this.issued++;
    }
    return true;
  }

  private nextId(): { id: string; start: number } {
    const n = this.connectionCount++;
    const seed = nextSeed(this.task.seed ^ Math.imul(n + 1, 0x85ebca6b) ^ this.task.workerIndex);
    return { id: `${this.task.workerIndex}/${n}`, start: startOf(seed) };
  }

  private recordMismatch(id: string, start: number, offset: number, actual: number): void {
    const expected = expectedByte(this.table, start, offset);
    this.fail('mismatch', `connection ${id}: byte ${offset} is ${actual}, expected ${expected}`);
    if (this.mismatches.length < MAX_MISMATCH_REPORTS) {
      this.mismatches.push({ connection: id, offset, expected, actual });
    }
  }

  /** Writes `length` pattern bytes from stream offset `offset`; returns the last write's result. */
  private writePattern(socket: tls.TLSSocket, start: number, offset: number, length: number) {
    let ok = true;
    let done = 0;

    while (done < length) {
      const piece = slice(this.table, start, offset + done, length - done);
      ok = socket.write(piece);
      done += piece.length;
    }

    this.counters.bytesSent += length;
    return ok;
  }

  /**
   * Drives one long-lived connection in `echo`, `bulk` or `half-close` mode.
   *
   * Echo keeps `pipeline` messages in flight and sends the next one when an echo completes.
   * Bulk also refills on `drain`, so the window stays full while the socket accepts bytes.
   * Half-close sends `bytesPerConnection` bytes, ends its write side at once and then expects
   * every byte back followed by the server's end of stream (RFC 8446 section 6.1 lets each side
   * close its write direction on its own).
   */
  private streamConnection(): Promise<void> {
    const { task, table } = this;
    const { id, start } = this.nextId();
    const size = task.size;
    const window = Math.max(1, task.pipeline);
    const sentAt = new Float64Array(window);
    const halfClose = task.mode === 'half-close';
    const limit = task.bytesPerConnection;

    let sent = 0;
    let completed = 0;
    let sentBytes = 0;
    let receivedBytes = 0;
    let handshakeDone = false;
    let ending = false;
    let failed = false;

    this.counters.connectionsOpened++;
    // Node 20's tls.connect passes allowHalfOpen to its TLSSocket, but the typings omit it.
    const options = { ...connectOptions(task.target), allowHalfOpen: halfClose };
    const socket = tls.connect(options as tls.ConnectionOptions);
    this.sockets.add(socket);
    socket.setTimeout(task.idleTimeoutMs);

    const canSend = (): boolean => {
      if (ending || failed || sent - completed >= window) return false;
      if (limit > 0 && sentBytes >= limit) return false;
      return this.take();
    };

    const sendOne = (): boolean => {
      const length = limit > 0 ? Math.min(size, limit - sentBytes) : size;
      sentAt[sent % window] = performance.now();
      sent++;
      const ok = this.writePattern(socket, start, sentBytes, length);
      sentBytes += length;
      return ok;
    };

    const fill = (): void => {
      while (canSend()) {
        const ok = sendOne();
        if (task.mode === 'bulk' && !ok) break;
        if (task.mode === 'echo' && window === 1) break;
      }

      if (halfClose && !ending && (this.stopped || (limit > 0 && sentBytes >= limit))) {
        ending = true;
        socket.end();
      }
    };

    const maybeFinish = (): void => {
      if (halfClose || ending || failed || completed < sent) return;
      if (canSendMore()) return;
      ending = true;
      socket.end();
    };

    const canSendMore = (): boolean => {
      if (this.stopped) return false;
      if (limit > 0 && sentBytes >= limit) return false;
      return task.requests === 0 || this.issued < task.requests;
    };

    socket.on('secureConnect', () => {
      handshakeDone = true;
      this.counters.handshakes++;
      if (socket.isSessionReused()) this.counters.resumed++;
      fill();
      maybeFinish();
    });

    socket.on('data', (chunk: Buffer) => {
      const wrong = verify(table, start, receivedBytes, chunk);
      if (wrong >= 0) {
        failed = true;
        this.recordMismatch(id, start, receivedBytes + wrong, chunk[wrong]!);
        socket.destroy();
        return;
      }

      receivedBytes += chunk.length;
      this.counters.bytesReceived += chunk.length;

      // A message is complete once every byte up to its end has come back.
      while (completed < sent && receivedBytes >= Math.min((completed + 1) * size, sentBytes)) {
        const latencyUs = (performance.now() - sentAt[completed % window]!) * 1000;
        this.histogram.recordValue(Math.max(1, Math.round(latencyUs)));
        completed++;
        this.counters.requests++;
      }

      fill();
      maybeFinish();
    });

    socket.on('drain', () => {
      if (task.mode === 'bulk') fill();
    });

    socket.on('end', () => {
      if (failed) return;
      if (receivedBytes < sentBytes) {
        failed = true;
        const what = halfClose ? 'after the client ended its write side' : 'before the echo';
        this.fail(
          'eof',
          `connection ${id}: server closed ${what} at ${receivedBytes}/${sentBytes}`,
        );
      }
      if (halfClose && !failed) this.counters.connectionsCompleted++;
      socket.end();
    });

    socket.on('timeout', () => {
      failed = true;
      this.fail('timeout', `connection ${id}: no progress for ${task.idleTimeoutMs} ms`);
      socket.destroy();
    });

    socket.on('error', (error: NodeJS.ErrnoException) => {
      if (failed) return;
      failed = true;
      this.fail(errorKind(error, handshakeDone), `connection ${id}: ${error.message}`);
    });

    return new Promise((resolve) => {
      socket.on('close', () => {
        this.sockets.delete(socket);
        if (!halfClose && !failed && ending) this.counters.connectionsCompleted++;
        resolve();
      });
    });
  }

  /** Repeats connect, handshake, one verified exchange and close until the run stops. */
  private async handshakeLoop(): Promise<void> {
    let session: Buffer | undefined;

    while (this.take()) {
      session = await this.handshakeOnce(this.task.resume ? session : undefined);
    }
  }

  /** One handshake-mode connection; resolves with the session it received, if any. */
  private handshakeOnce(session: Buffer | undefined): Promise<Buffer | undefined> {
    const { task, table } = this;
    const { id, start } = this.nextId();
    const startedAt = performance.now();
    let received = 0;
    let handshakeDone = false;
    let failed = false;
    let done = false;
    let newSession: Buffer | undefined;

    this.counters.connectionsOpened++;
    const socket = tls.connect(connectOptions(task.target, session));
    this.sockets.add(socket);
    socket.setTimeout(task.idleTimeoutMs);

    socket.on('session', (value: Buffer) => {
      newSession = value;
    });

    socket.on('secureConnect', () => {
      handshakeDone = true;
      this.counters.handshakes++;
      if (socket.isSessionReused()) this.counters.resumed++;
      this.writePattern(socket, start, 0, task.size);
    });

    socket.on('data', (chunk: Buffer) => {
      const wrong = verify(table, start, received, chunk);
      if (wrong >= 0) {
        failed = true;
        this.recordMismatch(id, start, received + wrong, chunk[wrong]!);
        socket.destroy();
        return;
      }

      received += chunk.length;
      this.counters.bytesReceived += chunk.length;
      if (received >= task.size && !done) {
        done = true;
        this.histogram.recordValue(Math.max(1, Math.round((performance.now() - startedAt) * 1000)));
        this.counters.requests++;
        socket.end();
      }
    });

    socket.on('end', () => {
      if (!done && !failed) {
        failed = true;
        this.fail('eof', `connection ${id}: server closed before the echo (${received} bytes)`);
      }
    });

    socket.on('timeout', () => {
      failed = true;
      this.fail('timeout', `connection ${id}: no progress for ${task.idleTimeoutMs} ms`);
      socket.destroy();
    });

    socket.on('error', (error: NodeJS.ErrnoException) => {
      if (failed) return;
      failed = true;
      this.fail(errorKind(error, handshakeDone), `connection ${id}: ${error.message}`);
    });

    return new Promise((resolve) => {
      socket.on('close', () => {
        this.sockets.delete(socket);
        if (done && !failed) this.counters.connectionsCompleted++;
        resolve(newSession ?? session);
      });
    });
  }
}
