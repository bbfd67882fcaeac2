import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { expect, test } from 'vitest';

import { createSecureContext } from '../src/tls/context.js';
import { createEngine, liveContexts, liveEngines } from '../src/tls/openssl-engine.js';
import { testCerts } from './fixtures/certs.js';
import { handshakePair, send } from './fixtures/engine-pair.js';

const certs = testCerts();

/** Creates `count` client/server pairs, runs each handshake and a message, destroys them. */
function churn(count: number): void {
  const server = createSecureContext({ cert: certs.server.cert, key: certs.server.key });
  const client = createSecureContext({ ca: certs.ca.cert, servername: 'localhost' });
  for (let i = 0; i < count; i++) {
    const c = createEngine(client);
    const s = createEngine(server, { isServer: true });
    // A tenth of them do real work, so the BIO pair and SSL buffers get allocated.
    if (i % 10 === 0) {
      handshakePair(c, s);
      send(c, s, Buffer.from('ping'));
    } else {
      c.handshake();
    }
    c.destroy();
    s.destroy();
  }
  server.destroy();
  client.destroy();
}

test('10,000 engines keep memory flat', () => {
  // Warm-up: allocator arenas, JIT code and OpenSSL's lazily built tables settle here.
  churn(1000);
  expect(liveEngines()).toBe(0);
  const before = process.memoryUsage().rss;

  // 5,000 pairs: 10,000 engines.
  churn(5000);

  expect(liveEngines()).toBe(0);
  expect(liveContexts()).toBe(0);
  const growth = process.memoryUsage().rss - before;
  // A leak of one SSL object (several KiB) per engine would add tens of MiB over 10,000.
  expect(growth).toBeLessThan(24 * 1024 * 1024);
});

test('finalizer frees a leaked engine', async () => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const ctx = createSecureContext({});
  createEngine(ctx);
  ctx.destroy();
  expect(liveEngines()).toBe(1);

  for (let i = 0; i < 50 && liveEngines() > 0; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
  expect(liveEngines()).toBe(0);
  expect(liveContexts()).toBe(0);
});
