/**
 * The `proxy` handler: a TLS terminator in front of a plain TCP backend.
 *
 * Each client connection gets its own backend connection. Bytes flow both ways with
 * back-pressure on both sides: a backend that does not read stops the shard from reading the
 * client, and a client that does not read pauses the backend socket. A half-close is passed on in
 * both directions: the client's close_notify ends the backend's write side, and the backend's FIN
 * makes the shard send close_notify. A backend that refuses or resets the connection is logged
 * with the ids, and the client gets close_notify.
 */
import net from 'node:net';

import { EAGAIN, codeName } from '../../shared/codes.js';
import type { TlsSocket } from '../../tls/tls-socket.js';
import type { ConnectionContext } from '../handler.js';

const BUFFER_BYTES = 16 * 1024;

/** Relays one client to the backend until both directions have ended or one side fails. */
export default function proxy(socket: TlsSocket, context: ConnectionContext): Promise<void> {
  const backendAddress = context.options.backend;
  if (backendAddress === undefined) {
    throw new Error('the proxy handler needs a backend address (--backend HOST:PORT)');
  }

  return new Promise((resolve) => {
    const backend = net.connect({
      host: backendAddress.host,
      port: backendAddress.port,
      allowHalfOpen: true,
    });
    backend.setNoDelay(true);

    const buffer = new Uint8Array(BUFFER_BYTES);
    let clientDone = false; // no more bytes from the client
    let backendDone = false; // no more bytes from the backend
    let backendWritable = true;
    let outbound: Uint8Array | null = null; // backend bytes not yet taken by the TLS socket
    const iov: Uint8Array[] = [];
    let finished = false;
    let clientWritesEnded = false;
    let closeNotifySent = false;

    const finish = (): void => {
      if (finished) return;
      finished = true;
      context.signal.removeEventListener('abort', onAbort);
      backend.destroy();
      resolve();
    };

    const finishIfBothDone = (): void => {
      if (clientDone && closeNotifySent) finish();
    };

    // The backend's FIN, once its last bytes are taken, becomes our close_notify. TLS 1.3 lets
    // the client go on sending after it (RFC 8446 section 6.1), so the other direction stays open.
    const endClientWrites = (): void => {
      if (clientWritesEnded) return;
      clientWritesEnded = true;
      socket.shutdown().then(() => {
        closeNotifySent = true;
        finishIfBothDone();
      }, finish);
    };

    // Client → backend: read plaintext while the backend takes it.
    function pumpClient(): void {
      while (!clientDone && backendWritable && !finished) {
        const n = socket.tryRecv(buffer, 0, buffer.byteLength);
        if (n === EAGAIN) return;

        if (n === 0) {
          clientDone = true;
          backend.end();
          return finishIfBothDone();
        }
        if (n < 0) {
          context.log.debug({ code: codeName(n) }, 'client connection failed');
          return finish();
        }

        backendWritable = backend.write(Buffer.from(buffer.subarray(0, n)));
      }
    }

    // Backend → client: hand each chunk to trySend, pausing the backend while it is short.
    function pumpBackend(): void {
      while (outbound !== null && !finished) {
        iov[0] = outbound;
        const n = socket.trySend(iov);
        if (n === EAGAIN) return;
        if (n < 0) {
          context.log.debug({ code: codeName(n) }, 'client connection failed');
          return finish();
        }

        outbound = n === outbound.byteLength ? null : outbound.subarray(n);
      }
      if (backendDone) return endClientWrites();
      backend.resume();
    }

    function onAbort(): void {
      // Drain: stop taking new requests from the client but deliver what the backend sends.
      clientDone = true;
      backend.end();
      finishIfBothDone();
    }

    backend.on('data', (chunk: Buffer) => {
      outbound = chunk;
      backend.pause();
      pumpBackend();
    });
    backend.on('drain', () => {
      backendWritable = true;
      pumpClient();
    });
    backend.on('end', () => {
      context.log.debug('backend ended its stream');
      backendDone = true;
      if (outbound === null) endClientWrites();
    });
    backend.on('error', (err: NodeJS.ErrnoException) => {
      context.log.warn(
        {
          err: err.message,
          code: err.code,
          backend: `${backendAddress.host}:${backendAddress.port}`,
        },
        'backend connection failed',
      );
      finish();
    });

    socket.setHandler({ readable: pumpClient, writable: pumpBackend });
    context.signal.addEventListener('abort', onAbort);
    backend.once('connect', pumpClient);
  });
}
