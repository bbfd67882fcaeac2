/**
 * Loads the connection handler of a shard: a built-in name or a module given by file URL.
 */
import type { ConnectionHandler } from '../handler.js';
import echo from './echo.js';
import proxy from './proxy.js';

/**
 * Returns the handler named by `handler`: `'echo'`, `'proxy'`, or the file URL of a module whose
 * default export is a `ConnectionHandler`. Throws an Error with one line naming the module when it
 * cannot be imported or its default export is not a function.
 */
export async function loadHandler(handler: string): Promise<ConnectionHandler> {
  if (handler === 'echo') return echo;
  if (handler === 'proxy') return proxy;

  let module: { default?: unknown };
  try {
    module = (await import(handler)) as { default?: unknown };
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new Error(`cannot load handler module ${handler}: ${reason}`, { cause: err });
  }

  if (typeof module.default !== 'function') {
    throw new Error(
      `handler module ${handler} must export a function as default: ` +
        'export default function (socket, context) { ... }',
    );
  }
  return module.default as ConnectionHandler;
}
