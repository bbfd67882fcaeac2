/**
 * The SharedArrayBuffer layout of a ring and the records it carries, in one place.
 *
 * A ring is one SharedArrayBuffer: a header of control words, then a data region of
 * `capacity` bytes (a power of two). The header words are Int32 slots. Each slot that both
 * threads touch has a 64-byte cache line to itself, so the producer and the consumer do not
 * contend for one line.
 *
 * A record is a 16-byte header followed by its payload, padded so that every record starts on a
 * 16-byte boundary. A record is never split across the end of the data region: when the
 * contiguous space left before the end is too small, the producer fills it with a PAD record and
 * writes the record at offset 0. That keeps the consumer's view of every payload one contiguous
 * slice of the buffer.
 */

// ---- Header words (indexes into an Int32Array over the whole SharedArrayBuffer) ----

/**
 * Read position: the count of bytes the consumer has released, as a wrapping 32-bit counter.
 * Written only by the consumer. The producer waits on this word when the ring is full.
 */
export const HEAD_INDEX = 0;
/**
 * Write position: the count of bytes the producer has published, as a wrapping 32-bit counter.
 * Written only by the producer. The consumer waits on this word when the ring is empty.
 */
export const TAIL_INDEX = 16;
/** 1 while the consumer may be waiting on TAIL_INDEX. The producer clears it when it notifies. */
export const CONSUMER_WAITING_INDEX = 32;
/** 1 while the producer may be waiting on HEAD_INDEX. The consumer clears it when it notifies. */
export const PRODUCER_WAITING_INDEX = 48;
/** Data region size in bytes, written once when the ring is created. */
export const CAPACITY_INDEX = 64;
/** Layout version, written once when the ring is created, so a mismatch fails at start. */
export const VERSION_INDEX = 65;

/** Value stored at VERSION_INDEX by this layout. */
export const LAYOUT_VERSION = 1;
/** Bytes before the data region: the header words above, rounded up to a cache line. */
export const HEADER_BYTES = 320;

// ---- Records ----

/** Record header size in bytes, and the alignment of every record in the data region. */
export const RECORD_HEADER_BYTES = 16;
/** Mask that rounds a length up to RECORD_HEADER_BYTES: `(n + RECORD_ALIGN_MASK) & ~mask`. */
export const RECORD_ALIGN_MASK = RECORD_HEADER_BYTES - 1;

/** Header field offsets, in 32-bit words from the start of a record. */
export const RECORD_CONN_ID_WORD = 0;
/** Record kind, one of the `KIND_*` constants. */
export const RECORD_KIND_WORD = 1;
/** Payload length in bytes (without padding). */
export const RECORD_LENGTH_WORD = 2;
/** One 32-bit argument whose meaning depends on the kind (CREDIT bytes, CLOSE reason). */
export const RECORD_ARG_WORD = 3;

/**
 * Largest payload of one record: a maximal TLS 1.3 ciphertext record (2^14 + 256 bytes,
 * RFC 8446 section 5.2), so relaying one TLS record never needs two ring records.
 */
export const MAX_RECORD_PAYLOAD = 16384 + 256;
/** Largest record including its header, already a multiple of RECORD_HEADER_BYTES. */
export const MAX_RECORD_BYTES = RECORD_HEADER_BYTES + MAX_RECORD_PAYLOAD;

/**
 * Smallest data region. With at least two maximal records of room, any record fits once the
 * consumer has drained the ring, even when the write position forces a PAD record.
 */
export const MIN_RING_CAPACITY = 64 * 1024;
/** Data region used when the caller does not choose one. */
export const DEFAULT_RING_CAPACITY = 1024 * 1024;
/** Largest data region, so the wrapping 32-bit positions can always tell full from empty. */
export const MAX_RING_CAPACITY = 1 << 30;

// ---- Record kinds ----

/** Filler up to the end of the data region, skipped by RingReader and never passed to handlers. */
export const KIND_PAD = 0;
/** A new connection, with the peer address and the windows as payload (see `OPEN_*`). */
export const KIND_OPEN = 1;
/** Bytes of the connection's stream. */
export const KIND_DATA = 2;
/** Half-close: the sender sends no more DATA in this direction. */
export const KIND_END = 3;
/** The connection is gone in both directions, with a `CLOSE_*` reason as the argument. */
export const KIND_CLOSE = 4;
/** The receiver consumed bytes and grants the argument's count back to the sender. */
export const KIND_CREDIT = 5;

// ---- CLOSE reasons (record argument) ----

/** Both directions ended with END before the close, so no byte was lost. */
export const CLOSE_NORMAL = 0;
/** The connection was dropped or aborted (a TCP reset, a socket error, a local abort). */
export const CLOSE_RESET = 1;

// ---- OPEN payload (byte offsets from the start of the payload) ----

/** u32: bytes the OPEN's sender may send before the first CREDIT (the receiver's window). */
export const OPEN_RX_WINDOW = 0;
/** u32: bytes the OPEN's receiver may send back before the first CREDIT. */
export const OPEN_TX_WINDOW = 4;
/** u16: the peer's port. */
export const OPEN_PORT = 8;
/** u8: the peer's address family: 4 (IPv4), 6 (IPv6), or 0 when unknown. */
export const OPEN_FAMILY = 10;
/** u8: the length in bytes of the peer's address text that follows. */
export const OPEN_ADDRESS_LENGTH = 11;
/** The peer's address as ASCII text (`127.0.0.1`, `::1`, `fe80::1%eth0`). */
export const OPEN_ADDRESS = 12;
/** Maximum address text length carried. A longer text is cut, but IPv6 with a zone fits. */
export const OPEN_MAX_ADDRESS_BYTES = 64;
/** Largest OPEN payload. */
export const OPEN_MAX_PAYLOAD = OPEN_ADDRESS + OPEN_MAX_ADDRESS_BYTES;

// ---- Flow control ----

/** Bytes one connection may have in flight per direction before the receiver grants credit. */
export const DEFAULT_WINDOW = 64 * 1024;
/** Smallest window accepted, so credit records stay rare next to the data they release. */
export const MIN_WINDOW = 4096;
/** Largest window accepted, so windows fit the 32-bit OPEN fields and bound per-connection memory. */
export const MAX_WINDOW = 64 * 1024 * 1024;

// ---- OPEN payload codec ----

/** The decoded payload of an OPEN record. */
export interface OpenPayload {
  /** The peer's address text as Node reports it (`127.0.0.1`, `::1`), or '' when unknown. */
  readonly address: string;
  /** The peer's port, or 0 when unknown. */
  readonly port: number;
  /** The peer's address family as Node names it: 'IPv4', 'IPv6', or '' when unknown. */
  readonly family: string;
  /** Bytes the OPEN's sender may send before the first CREDIT. */
  readonly rxWindow: number;
  /** Bytes the OPEN's receiver may send back before the first CREDIT. */
  readonly txWindow: number;
}

/**
 * Encodes an OPEN payload into `dst` (at least OPEN_MAX_PAYLOAD bytes) and returns its length.
 * Address text beyond OPEN_MAX_ADDRESS_BYTES is cut, and characters outside ASCII become '?'.
 */
export function encodeOpenPayload(dst: Uint8Array, payload: OpenPayload): number {
  const view = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
  view.setUint32(OPEN_RX_WINDOW, payload.rxWindow, true);
  view.setUint32(OPEN_TX_WINDOW, payload.txWindow, true);
  view.setUint16(OPEN_PORT, payload.port, true);
  let family = 0;
  if (payload.family === 'IPv4') family = 4;
  if (payload.family === 'IPv6') family = 6;
  view.setUint8(OPEN_FAMILY, family);

  const address = payload.address;
  const length = Math.min(address.length, OPEN_MAX_ADDRESS_BYTES);
  for (let i = 0; i < length; i++) {
    const code = address.charCodeAt(i);
    dst[OPEN_ADDRESS + i] = code < 0x80 ? code : 0x3f;
  }
  view.setUint8(OPEN_ADDRESS_LENGTH, length);
  return OPEN_ADDRESS + length;
}

/**
 * Decodes the OPEN payload at `bytes[offset, offset + length)`. Returns null when the payload is
 * shorter than its fixed fields or than the address length it declares.
 */
export function decodeOpenPayload(
  bytes: Uint8Array,
  offset: number,
  length: number,
): OpenPayload | null {
  if (length < OPEN_ADDRESS) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset + offset, length);
  const addressLength = view.getUint8(OPEN_ADDRESS_LENGTH);
  if (OPEN_ADDRESS + addressLength > length) return null;

  let address = '';
  for (let i = 0; i < addressLength; i++) {
    address += String.fromCharCode(bytes[offset + OPEN_ADDRESS + i]);
  }
  const familyCode = view.getUint8(OPEN_FAMILY);
  let family = '';
  if (familyCode === 4) family = 'IPv4';
  if (familyCode === 6) family = 'IPv6';
  return {
    address,
    port: view.getUint16(OPEN_PORT, true),
    family,
    rxWindow: view.getUint32(OPEN_RX_WINDOW, true),
    txWindow: view.getUint32(OPEN_TX_WINDOW, true),
  };
}
