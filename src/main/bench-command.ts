import type { Command } from 'commander';

/**
 * Registers `shardtls bench` on a commander program.
 *
 * The command is a TLS client that stresses any TLS echo server. This first version only declares
 * the command so that the CLI builds; the load runner is attached in the same file.
 */
export function registerBenchCommand(program: Command): void {
  program
    .command('bench')
    .description('stress a TLS echo server (shardtls or any other) and check every echoed byte')
    .action(() => {
      process.stderr.write('shardtls bench: the load runner is not built yet\n');
      process.exitCode = 2;
    });
}
