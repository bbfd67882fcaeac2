import { type Command, CommanderError, Option } from 'commander';
import type { BenchOptions } from './bench/options.js';
import { BenchUsageError, SCENARIO_NAMES } from './bench/options.js';
import { runBench } from './bench/run.js';
import { SCENARIOS } from './bench/scenarios.js';
import { formatSummary } from './bench/summary.js';

export type { BenchOptions, ScenarioName } from './bench/options.js';
export { BenchUsageError } from './bench/options.js';
export type { BenchResult } from './bench/run.js';
export { runBench } from './bench/run.js';

/** Commander errors that mean an invalid command line, which exits with 2. */
const USAGE_ERRORS = new Set([
  'commander.unknownOption',
  'commander.excessArguments',
  'commander.missingArgument',
  'commander.optionMissingArgument',
  'commander.missingMandatoryOptionValue',
  'commander.invalidArgument',
  'commander.conflictingOption',
]);

function number(value: string): number {
  return value.trim() === '' ? Number.NaN : Number(value);
}

function scenarioHelp(): string {
  const lines = SCENARIO_NAMES.map((name) => `  ${name}: ${SCENARIOS[name].invariant}`);
  return `\nScenarios (--scenario NAME) and the invariant each checks:\n${lines.join('\n')}\n`;
}

/**
 * Registers `shardtls bench` on a commander program.
 *
 * The command runs `runBench` and prints its summary (or one JSON object with `--json`). Exit
 * status: 0 when the run passed, 1 when an echoed byte did not match, a connection failed or a
 * scenario's invariant broke, 2 for an invalid option (one line on stderr).
 */
export function registerBenchCommand(program: Command): void {
  program
    .command('bench')
    .description('stress a TLS echo server (shardtls or any other) and check every echoed byte')
    .option('--host <host>', 'server host', '127.0.0.1')
    .requiredOption('--port <port>', 'server port', number)
    .option('--servername <name>', 'SNI name, also checked against the certificate')
    .option('--ca <file>', 'PEM file with the CA that signed the server certificate')
    .option('--insecure', 'skip certificate checks (self-signed test servers)')
    .option('--connections <n>', 'concurrent connections (default 16)', number)
    .option('--size <bytes>', 'message size in bytes (default 1024, bulk 16384)', number)
    .option('--pipeline <depth>', 'messages in flight per connection (default 1, bulk 16)', number)
    .option('--duration <seconds>', 'run length in seconds (default 10)', number)
    .option('--requests <n>', 'total requests, instead of --duration', number)
    .addOption(
      new Option(
        '--mode <mode>',
        'echo: ping-pong or pipelined; bulk: stream both ways; ' +
          'handshake: connect, one exchange, close',
      ).choices(['echo', 'bulk', 'handshake']),
    )
    .addOption(new Option('--tls-version <version>', 'TLS version').choices(['1.2', '1.3']))
    .option('--resume', 'resume TLS sessions on reconnect (handshake mode)')
    .option('--threads <n>', 'client worker threads (default: number of cores)', number)
    .addOption(
      new Option('--scenario <name>', 'stress scenario, see below').choices(SCENARIO_NAMES),
    )
    .option('--stats-url <url>', 'server stats endpoint (JSON memory.rss), for slow-reader')
    .option(
      '--max-rss-growth <MiB>',
      'allowed server RSS growth in slow-reader (default 256)',
      number,
    )
    .option('--timeout <seconds>', 'hard limit on the run (default duration + 60, or 300)', number)
    .option('--idle-timeout <seconds>', 'fail a connection without progress (default 10)', number)
    .option('--seed <n>', 'payload seed (default random)', number)
    .option('--json', 'print the result as one JSON object')
    .addHelpText('after', scenarioHelp())
    .exitOverride((error: CommanderError) => {
      if (USAGE_ERRORS.has(error.code)) process.exit(2);
      process.exit(error.exitCode);
    })
    .action(async (flags: Record<string, unknown>) => {
      await benchAction(flags);
    });
}

async function benchAction(flags: Record<string, unknown>): Promise<void> {
  const options: BenchOptions = {
    host: flags.host as string,
    port: flags.port as number,
    servername: flags.servername as string | undefined,
    ca: flags.ca as string | undefined,
    insecure: flags.insecure === true,
    connections: flags.connections as number | undefined,
    size: flags.size as number | undefined,
    pipeline: flags.pipeline as number | undefined,
    duration: flags.duration as number | undefined,
    requests: flags.requests as number | undefined,
    mode: flags.mode as BenchOptions['mode'],
    tlsVersion: flags.tlsVersion as BenchOptions['tlsVersion'],
    resume: flags.resume === true,
    threads: flags.threads as number | undefined,
    scenario: flags.scenario as BenchOptions['scenario'],
    statsUrl: flags.statsUrl as string | undefined,
    maxRssGrowth: flags.maxRssGrowth as number | undefined,
    timeout: flags.timeout as number | undefined,
    idleTimeout: flags.idleTimeout as number | undefined,
    seed: flags.seed as number | undefined,
    progress: flags.json === true ? false : undefined,
  };

  try {
    const result = await runBench(options);
    const text = flags.json === true ? JSON.stringify(result) : formatSummary(result);
    process.stdout.write(`${text}\n`);
    process.exitCode = result.ok ? 0 : 1;
  } catch (error) {
    if (error instanceof BenchUsageError) {
      process.stderr.write(`shardtls bench: ${error.message}\n`);
      process.exitCode = 2;
      return;
    }
    process.stderr.write(`shardtls bench: ${(error as Error).message}\n`);
    process.exitCode = 1;
  }
}
