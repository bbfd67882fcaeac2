import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import selfsigned from 'selfsigned';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** A TLS echo server on 127.0.0.1, port 0, for the bench tests. */
export interface EchoServer {
  port: number;
  /** PEM of its self-signed certificate, usable as --ca with --servername localhost. */
  cert: string;
  close(): Promise<void>;
}

let pems: Promise<{ private: string; cert: string }> | undefined;

/** Makes (once per test file) a self-signed certificate for localhost. */
export function testCertificate(): Promise<{ private: string; cert: string }> {
  pems ??= selfsigned.generate([{ name: 'commonName', value: 'localhost' }], {
    notAfterDate: new Date(Date.now() + 86_400_000),
    keyType: 'ec',
  });
  return pems;
}

/**
 * Starts a Node `tls` echo server. With `corruptAt`, the server flips the byte at that offset of
 * each connection's stream, the way a broken server would.
 */
export async function startEchoServer(corruptAt?: number): Promise<EchoServer> {
  const { private: key, cert } = await testCertificate();
  const sockets = new Set<net.Socket>();

  const server = tls.createServer({ key, cert, allowHalfOpen: true }, (socket) => {
    socket.on('error', () => {});

    if (corruptAt === undefined) {
      socket.pipe(socket);
      return;
    }

    let offset = 0;
    socket.on('data', (chunk: Buffer) => {
      if (corruptAt >= offset && corruptAt < offset + chunk.length) {
        chunk[corruptAt - offset] ^= 0xff;
      }
      offset += chunk.length;
      socket.write(chunk);
    });
    socket.on('end', () => socket.end());
  });
  server.on('tlsClientError', () => {});
  server.on('connection', (socket: net.Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;

  return {
    port,
    cert,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** Output of a finished command. */
export interface CommandOutput {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a node program with arguments, killing it after `timeoutMs`. */
export function runNode(args: string[], timeoutMs = 60_000): Promise<CommandOutput> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);

    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * Runs `bench` with a program that registers only the bench command from dist/, so these tests
 * need no other command to be built.
 */
export function runBenchCommand(args: string[], timeoutMs?: number): Promise<CommandOutput> {
  const entry = path.join(root, 'dist/main/bench-command.js');
  const script =
    "import { Command } from 'commander';" +
    `import { registerBenchCommand } from ${JSON.stringify(entry)};` +
    "const program = new Command('shardtls');" +
    'registerBenchCommand(program);' +
    "await program.parseAsync(process.argv.slice(1), { from: 'user' });";
  return runNode(['--input-type=module', '-e', script, '--', 'bench', ...args], timeoutMs);
}
