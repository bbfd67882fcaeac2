/**
 * Structured logging with pino.
 *
 * Logs are JSON lines on stdout when it is not a terminal (a file, a pipe, a log collector) and
 * readable lines when it is. The readable form uses pino-pretty as a synchronous stream in the
 * calling thread, not a transport worker thread, so a shard does not start a second thread for
 * its logs and nothing is lost when the process exits.
 *
 * Paths that can contain key material are redacted. Callers must not pass plaintext either:
 * log byte counts, never bytes.
 */
import { pino, type Logger } from 'pino';
import PinoPretty from 'pino-pretty';

import type { LogLevel } from './config.js';

export type { Logger } from 'pino';

/** Options of `createLogger`. */
export interface LoggerOptions {
  level: LogLevel;
  /** Component name printed with every line, for example `shardtls`. */
  name?: string;
  /** Readable lines instead of JSON; by default, readable exactly when stdout is a terminal. */
  pretty?: boolean;
  /** Stream that receives the lines; stdout (descriptor 1) by default. */
  destination?: NodeJS.WritableStream;
}

/** Fields removed from every log line because they can contain key material. */
const REDACTED_PATHS = [
  'key',
  'passphrase',
  '*.key',
  '*.passphrase',
  'tls.certs[*].key',
  'tls.certs[*].passphrase',
  'options.tls.certs[*].key',
  'options.tls.certs[*].passphrase',
];

/**
 * Creates the root logger of a process or a shard.
 *
 * Returns a pino logger at `options.level` (`'silent'` disables it). Throws nothing beyond
 * pino's own errors for an invalid level, which the config schema already rejects.
 */
export function createLogger(options: LoggerOptions): Logger {
  const pretty = options.pretty ?? process.stdout.isTTY === true;
  const base = {
    level: options.level,
    name: options.name,
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
  };

  if (pretty) {
    const stream = PinoPretty({
      sync: true,
      colorize: options.destination === undefined && process.stdout.isTTY === true,
      destination: options.destination ?? 1,
      ignore: 'pid,hostname',
      translateTime: 'SYS:HH:MM:ss.l',
    });
    return pino(base, stream);
  }
  if (options.destination !== undefined) return pino(base, options.destination);
  return pino(base, pino.destination({ dest: 1, sync: true }));
}

/** Returns a child logger whose lines carry `shard: shardId`. */
export function shardLogger(parent: Logger, shardId: number): Logger {
  return parent.child({ shard: shardId });
}

/** Returns a child logger whose lines carry `conn: connectionId`. */
export function connectionLogger(parent: Logger, connectionId: number): Logger {
  return parent.child({ conn: connectionId });
}
