/**
 * Descriptor passing for the direct transport: the native `dupFd` / `closeFd` and the accepted
 * socket's descriptor number.
 */
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';

interface FdAddon {
  dupFd(fd: number): number;
  closeFd(fd: number): void;
}

let addon: FdAddon | null | undefined;

/**
 * Returns the descriptor functions, or null where they are not available (the addon did not
 * build, or the platform is not POSIX). The caller then falls back to the relay transport.
 */
export function fdAddon(): FdAddon | null {
  if (addon !== undefined) return addon;
  if (process.platform === 'win32') return (addon = null);
  try {
    const require = createRequire(import.meta.url);
    addon = require('../../build/Release/shardtls_fd.node') as FdAddon;
  } catch {
    addon = null;
  }
  return addon;
}

/**
 * Returns the descriptor number of an accepted TCP socket, or -1 when Node does not expose it.
 * The `_handle.fd` property is internal to Node but present on every POSIX release since 0.x.
 */
export function socketFd(socket: Socket): number {
  const handle = (socket as unknown as { _handle?: { fd?: unknown } })._handle;
  const fd = handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : -1;
}
