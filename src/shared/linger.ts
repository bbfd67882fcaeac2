/**
 * A close of a TCP socket that lets the last bytes arrive instead of resetting the connection.
 *
 * A TCP stack that closes a socket while received data is unread, or that receives data after
 * the close, sends a reset (RFC 1122 section 4.2.2.13). The reset makes the peer discard
 * what it had not read yet, which can be the last echoed bytes and the close_notify. So after
 * our FIN the socket keeps reading, and drops what arrives, until the peer's FIN or a deadline.
 */
import type { Socket } from 'node:net';

/** Time a closing socket waits for the peer's FIN before it is destroyed anyway. */
export const LINGER_MS = 2_000;

/**
 * Ends `socket`'s write side after the bytes already written, drains and drops its input until
 * the peer's FIN (or `lingerMs`), then destroys it. The caller must ignore `'data'` events from
 * then on. Resolves when the socket has closed; never rejects.
 */
export function closeAfterPeer(socket: Socket, lingerMs: number = LINGER_MS): Promise<void> {
  if (socket.destroyed) return Promise.resolve();

  return new Promise((resolve) => {
    let finished = socket.writableFinished;
    let ended = socket.readableEnded;
    const timer = setTimeout(() => socket.destroy(), lingerMs);

    const destroyWhenBothDone = (): void => {
      if (finished && ended) socket.destroy();
    };
    socket.once('finish', () => {
      finished = true;
      destroyWhenBothDone();
    });
    socket.once('end', () => {
      ended = true;
      destroyWhenBothDone();
    });
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.on('error', () => {}); // 'close' follows, and the connection is over either way

    socket.end();
    socket.resume();
    destroyWhenBothDone();
  });
}
