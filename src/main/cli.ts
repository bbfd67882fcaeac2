#!/usr/bin/env node
/**
 * The `shardtls` command: `serve` runs the TLS service, `bench` stresses a TLS echo server.
 *
 * Exit status: 0 on success and for --help or --version, 2 for invalid input (an unknown option,
 * a bad value, a missing file, an address in use), 1 for an unexpected failure. Invalid input is
 * reported as one line on stderr without a stack trace.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';

import { ShardTlsError } from '../shared/codes.js';
import { ConfigError } from '../shared/config.js';
import { registerBenchCommand } from './bench-command.js';
import { registerServeCommand } from './serve-command.js';

const EXIT_USAGE = 2;
const EXIT_FAILURE = 1;

/**
 * Start-up errors caused by what the user chose, reported like other invalid input: the listen
 * address, and a shard that cannot start with the options (a handler module that fails to load).
 */
const USAGE_ERRORS = new Set([
  'EADDRINUSE',
  'EADDRNOTAVAIL',
  'EACCES',
  'ENOTFOUND',
  'ERR_SHARD_START',
]);

function packageVersion(): string {
  // Both src/main/cli.ts and dist/main/cli.js sit two levels below package.json.
  const url = new URL('../../package.json', import.meta.url);
  return (JSON.parse(readFileSync(url, 'utf8')) as { version: string }).version;
}

function createProgram(): Command {
  const program = new Command('shardtls')
    .description('multi-core TLS service for Node.js')
    .version(packageVersion())
    .showSuggestionAfterError(true)
    .exitOverride()
    // Commander's own errors are printed by main() as one line, so it writes none here.
    .configureOutput({ outputError: () => {} });

  registerServeCommand(program);
  registerBenchCommand(program);
  return program;
}

function reportUsageError(message: string): void {
  const line = message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ');
  process.stderr.write(`shardtls: ${line}\n`);
  process.exitCode = EXIT_USAGE;
}

async function main(argv: string[]): Promise<void> {
  try {
    await createProgram().parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version also end in a CommanderError, with exit code 0.
      if (error.exitCode === 0) return;
      reportUsageError(error.message);
      return;
    }
    if (
      error instanceof ConfigError ||
      (error instanceof ShardTlsError && USAGE_ERRORS.has(error.code))
    ) {
      reportUsageError(error.message);
      return;
    }
    if (error instanceof ShardTlsError) {
      process.stderr.write(`shardtls: ${error.message} (${error.code})\n`);
      process.exitCode = EXIT_FAILURE;
      return;
    }
    process.stderr.write(`shardtls: unexpected failure: ${(error as Error).stack ?? error}\n`);
    process.exitCode = EXIT_FAILURE;
  }
}

await main(process.argv);
