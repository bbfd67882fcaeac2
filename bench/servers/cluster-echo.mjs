/**
 * TLS echo server on Node `cluster`: N worker processes share one listening port, the
 * multi-process reference of bench/compare.ts. On Linux the primary accepts connections and
 * hands them to the workers round-robin (cluster.SCHED_RR, Node's default there).
 *
 * Usage: node bench/servers/cluster-echo.mjs --cert FILE --key FILE --workers N
 * Prints one JSON line once every worker listens: {"msg":"listening","port":N}. SIGTERM stops
 * the workers, then the primary.
 */
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import tls from 'node:tls';

/** Returns the value after `--name` on the command line; exits with 2 when it is missing. */
function flag(name) {
  const at = process.argv.indexOf(`--${name}`);
  if (at < 0 || process.argv[at + 1] === undefined) {
    console.error(`missing --${name}: see the usage at the top of this file`);
    process.exit(2);
  }
  return process.argv[at + 1];
}

if (cluster.isPrimary) {
  const workers = Number(flag('workers'));
  if (!Number.isInteger(workers) || workers < 1) {
    console.error(`invalid --workers ${flag('workers')}: expected a positive integer`);
    process.exit(2);
  }

  // Workers that call listen(0) all get the same free port from the primary (Node cluster docs,
  // "How it works"); a second port would split the clients, so it stops the server.
  const ports = new Set();
  let listening = 0;
  cluster.on('listening', (_worker, address) => {
    listening++;
    ports.add(address.port);
    if (ports.size > 1) {
      console.error(`workers listen on different ports ${[...ports].join(', ')}: stopping`);
      process.kill(process.pid, 'SIGTERM');
      return;
    }
    if (listening === workers) {
      console.log(JSON.stringify({ msg: 'listening', port: address.port, pid: process.pid }));
    }
  });
  cluster.on('exit', (worker, code, signal) => {
    if (!stopping) console.error(`worker ${worker.process.pid} exited with ${code ?? signal}`);
  });
  for (let i = 0; i < workers; i++) cluster.fork();

  let stopping = false;
  process.on('SIGTERM', () => {
    stopping = true;
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM');
    setTimeout(() => process.exit(0), 2000);
    cluster.disconnect(() => process.exit(0));
  });
} else {
  const server = tls.createServer(
    { cert: readFileSync(flag('cert')), key: readFileSync(flag('key')), allowHalfOpen: true },
    (socket) => {
      socket.on('error', () => socket.destroy());
      socket.pipe(socket);
    },
  );
  server.on('tlsClientError', () => {});
  server.listen(0, '127.0.0.1');
  process.on('SIGTERM', () => process.exit(0));
}
