/**
 * A comlink endpoint over a `worker_threads` MessagePort.
 *
 * comlink speaks the browser's `addEventListener('message')` shape; Node's MessagePort emits
 * `'message'` with the data itself. This adapter maps one onto the other, and `unref`s the port
 * so an idle control plane never keeps a process alive.
 */
import type { MessagePort } from 'node:worker_threads';

import type { Endpoint } from 'comlink';

type Listener = Parameters<Endpoint['addEventListener']>[1];
type Transfer = Parameters<Endpoint['postMessage']>[1];

/** Wraps `port` as a comlink `Endpoint`. */
export function portEndpoint(port: MessagePort): Endpoint {
  const wrapped = new WeakMap<Listener, (data: unknown) => void>();

  return {
    postMessage(message: unknown, transfer?: Transfer) {
      port.postMessage(message, transfer as never);
    },
    addEventListener(_type: string, listener: Listener) {
      const onMessage = (data: unknown): void => {
        const event = { data } as Parameters<Exclude<Listener, { handleEvent: unknown }>>[0];
        if (typeof listener === 'function') listener(event);
        else listener.handleEvent(event);
      };
      wrapped.set(listener, onMessage);
      port.on('message', onMessage);
      port.unref();
    },
    removeEventListener(_type: string, listener: Listener) {
      const onMessage = wrapped.get(listener);
      if (onMessage === undefined) return;
      port.off('message', onMessage);
      wrapped.delete(listener);
    },
  };
}
