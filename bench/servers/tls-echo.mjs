/**
 * TLS echo server in one Node process (node:tls), the single-core reference of bench/compare.ts.
 *
 * Usage: node bench/servers/tls-echo.mjs --cert FILE --key FILE
 * Listens on a free port of 127.0.0.1 and prints one JSON line: {"msg":"listening","port":N}.
 * A client's end of stream ends the echo (half-close is kept until then). Stops on SIGTERM.
 */
import { readFileSync } from 'node:fs';
import tls from 'node:tls';

/** Returns the value after `--name` on the command line; exits with 2 when it is missing. */
function flag(name) {
  const at = process.argv.indexOf(`--${name}`);
  if (at < 0 || process.argv[at + 1] === undefined) {
    console.error(`missing --${name} FILE: pass the PEM file`);
    process.exit(2);
  }
  return process.argv[at + 1];
}

const server = tls.createServer(
  { cert: readFileSync(flag('cert')), key: readFileSync(flag('key')), allowHalfOpen: true },
  (socket) => {
    socket.on('error', () => socket.destroy());
    socket.pipe(socket);
  },
);
server.on('tlsClientError', () => {});

server.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ msg: 'listening', port: server.address().port, pid: process.pid }));
});

process.on('SIGTERM', () => process.exit(0));
