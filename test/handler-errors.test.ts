/**
 * A handler's exception closes its own connection only, whether it rejects or throws from a
 * readiness callback.
 */
import { fileURLToPath } from 'node:url';

import { afterEach, expect, test } from 'vitest';

import { connect, startService, waitFor, type TestService } from './helpers/service.js';

const handler = fileURLToPath(new URL('./fixtures/callback-throw-handler.mjs', import.meta.url));

let service: TestService | null = null;

afterEach(async () => {
  await service?.server.close({ deadlineMs: 1_000 });
  service = null;
});

/** Sends `text` and resolves with the first chunk echoed back. */
function exchange(socket: import('node:tls').TLSSocket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    socket.once('data', (chunk: Buffer) => resolve(chunk.toString()));
    socket.once('error', reject);
    socket.write(text);
  });
}

test('throwing callback closes one connection', async () => {
  service = await startService({ handler, shards: 1 });
  const s = service;

  const neighbour = await connect(s);
  expect(await exchange(neighbour, 'before')).toBe('before');

  const faulty = await connect(s);
  const closed = new Promise<void>((resolve) => faulty.once('close', () => resolve()));
  faulty.on('error', () => {});
  faulty.write('throw now');
  await closed;

  // The shard did not die: no restart, the neighbour still echoes, the error was counted.
  expect(await exchange(neighbour, 'after')).toBe('after');
  await waitFor(async () => (await s.server.stats()).shards[0].handlerErrors === 1);
  await waitFor(async () => (await s.server.stats()).shards[0].connectionsOpen === 1);
  const stats = await s.server.stats();
  expect(stats.shardRestarts).toBe(0);
  neighbour.destroy();
});
