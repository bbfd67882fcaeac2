/**
 * The `echo` handler: every plaintext byte read is written back, in order.
 *
 * It runs on `tryRecv` / `trySend` and the readiness callbacks, with one buffer per connection
 * and no Promise per message. While a write is short it stops reading, so a client that does not
 * read its echo is slowed by TCP flow control instead of growing the server's memory.
 */
import { EAGAIN } from '../../shared/codes.js';
import type { TlsSocket } from '../../tls/tls-socket.js';
import type { ConnectionContext } from '../handler.js';

const BUFFER_BYTES = 16 * 1024;

/** Echoes until the peer's close_notify, an error, or a drain. */
export default function echo(socket: TlsSocket, context: ConnectionContext): Promise<void> {
  return new Promise((resolve) => {
    const buffer = new Uint8Array(BUFFER_BYTES);
    const iov: Uint8Array[] = [buffer];
    let filled = 0;
    let sent = 0;
    let done = false;

    const finish = (): void => {
      if (done) return;
      done = true;
      context.signal.removeEventListener('abort', pump);
      resolve();
    };

    function pump(): void {
      while (!done) {
        // 1. Write back what was read before reading more.
        if (sent < filled) {
          iov[0] = buffer.subarray(sent, filled);
          const n = socket.trySend(iov);
          if (n === EAGAIN) return;
          if (n < 0) return finish();
          sent += n;
          continue;
        }

        // 2. Read the next piece. On drain, echo what already arrived and stop at EAGAIN.
        const n = socket.tryRecv(buffer, 0, buffer.byteLength);
        if (n === EAGAIN) {
          if (context.signal.aborted) finish();
          return;
        }
        if (n <= 0) return finish();
        filled = n;
        sent = 0;
      }
    }

    socket.setHandler({ readable: pump, writable: pump });
    context.signal.addEventListener('abort', pump);
    pump();
  });
}
