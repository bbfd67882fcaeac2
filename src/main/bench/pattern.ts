/**
 * Payload bytes for `shardtls bench`, derived from seeds so that every echoed byte can be checked
 * without keeping a copy of what was sent.
 *
 * A worker fills one table from its run seed with a cheap PRNG (a 32-bit LCG). Each connection
 * starts at a table position drawn from its own seed, and the byte at stream offset `o` is
 * `table[(start + o) % PERIOD]`. The table repeats its first WINDOW bytes at the end, so every
 * window of up to WINDOW bytes is one contiguous slice. Sending takes a view of the table and
 * checking calls the native `Buffer.compare`, so no payload bytes are allocated per message.
 */

/** Period of the payload pattern in bytes: prime, so it never lines up with power-of-two sizes. */
export const PERIOD = 65_521;

/** Largest slice handed out by `slice` or checked in one `compare` call, in bytes. */
export const WINDOW = 65_536;

/** Advances a 32-bit LCG (Numerical Recipes constants) by one step and returns the new state. */
export function nextSeed(state: number): number {
  return (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
}

/** Builds the payload table of a worker from its seed: PERIOD + WINDOW bytes. */
export function buildTable(seed: number): Buffer {
  const table = Buffer.allocUnsafe(PERIOD + WINDOW);
  let state = seed >>> 0;
  for (let i = 0; i < PERIOD; i++) {
    state = nextSeed(state);
    table[i] = state >>> 24;
  }

  // WINDOW is larger than PERIOD, so the tail is filled byte by byte: a single copy of the
  // first WINDOW bytes would read tail bytes that are not written yet.
  for (let i = PERIOD; i < table.length; i++) table[i] = table[i - PERIOD]!;
  return table;
}

/** Returns the table position at which the connection with this seed starts its stream. */
export function startOf(connectionSeed: number): number {
  return nextSeed(nextSeed(connectionSeed >>> 0)) % PERIOD;
}

/**
 * Checks `data` against the pattern of a stream that started at table position `start`, where
 * `data[0]` is the byte at stream offset `offset`.
 *
 * Returns -1 when every byte matches, or the index in `data` of the first wrong byte.
 */
export function verify(table: Buffer, start: number, offset: number, data: Uint8Array): number {
  let done = 0;

  while (done < data.length) {
    const n = Math.min(WINDOW, data.length - done);
    const position = (start + offset + done) % PERIOD;

    if (table.compare(data, done, done + n, position, position + n) !== 0) {
      for (let i = 0; i < n; i++) {
        if (data[done + i] !== table[position + i]) return done + i;
      }
    }

    done += n;
  }

  return -1;
}

/** Returns the pattern byte at stream offset `offset` of a stream that starts at `start`. */
export function expectedByte(table: Buffer, start: number, offset: number): number {
  return table[(start + offset) % PERIOD]!;
}

/**
 * Returns a view of the next `length` pattern bytes (at most WINDOW) at stream offset `offset`.
 * The view shares the table's memory: callers never write to it.
 */
export function slice(table: Buffer, start: number, offset: number, length: number): Buffer {
  const position = (start + offset) % PERIOD;
  return table.subarray(position, position + Math.min(length, WINDOW));
}
