/**
 * Plain HTTP/1.1 backend (node:http) behind the TLS proxies of bench/compare.ts: every request
 * gets `200` with a fixed 64-byte body, over keep-alive connections.
 *
 * Usage: node bench/servers/http-backend.mjs
 * Listens on a free port of 127.0.0.1 and prints one JSON line: {"msg":"listening","port":N}.
 */
import http from 'node:http';

const BODY = Buffer.alloc(64, 'x');
BODY[63] = 0x0a;

const server = http.createServer((request, response) => {
  request.resume();
  response.writeHead(200, { 'content-type': 'text/plain', 'content-length': BODY.length });
  response.end(BODY);
});
server.keepAliveTimeout = 60_000;

server.listen(0, '127.0.0.1', () => {
  console.log(JSON.stringify({ msg: 'listening', port: server.address().port, pid: process.pid }));
});

process.on('SIGTERM', () => process.exit(0));
