/**
 * Helpers for an iovec: a list of byte arrays that is sent as one stream.
 *
 * None of them copies bytes or mutates the caller's arrays.
 */

/** A list of byte arrays sent in order as one stream. */
export type IoVec = readonly Uint8Array[];

/** Returns the total number of bytes in `iov`. */
export function iovLength(iov: IoVec): number {
  let total = 0;
  for (let i = 0; i < iov.length; i++) total += iov[i].byteLength;
  return total;
}

/** Returns true when `iov` contains no bytes (no arrays, or only empty ones). */
export function iovIsEmpty(iov: IoVec): boolean {
  for (let i = 0; i < iov.length; i++) {
    if (iov[i].byteLength > 0) return false;
  }
  return true;
}

/**
 * Returns the iovec that remains after skipping the first `n` bytes of `iov`.
 *
 * The result shares memory with `iov` (a partly consumed array becomes a `subarray` view) and
 * `iov` itself is left unchanged. Throws a RangeError when `n` is negative or longer than `iov`,
 * because that is a caller bug.
 */
export function iovAdvance(iov: IoVec, n: number): Uint8Array[] {
  if (n < 0 || !Number.isInteger(n)) throw new RangeError(`cannot advance an iovec by ${n} bytes`);

  let i = 0;
  while (i < iov.length && n >= iov[i].byteLength) {
    n -= iov[i].byteLength;
    i++;
  }
  if (i === iov.length) {
    if (n > 0) throw new RangeError('cannot advance an iovec past its end');
    return [];
  }

  const rest = iov.slice(i);
  if (n > 0) rest[0] = rest[0].subarray(n);
  return rest;
}
