/**
 * Node-port framing: `length uint32 LE | CRC-32 uint32 LE of payload | payload`, where the
 * payload is CBOR `[protocolVersion, type, body]`. Every byte from the network is length- and
 * CRC-checked before it is decoded; a bad frame is a {@link ProtocolError} and the connection
 * that sent it is closed.
 *
 * @module
 */
import { Decoder, Encoder } from "cbor-x";
import { concatBytes, copyParts } from "../common/bytes.ts";
import { crc32 } from "../common/crc32.ts";
import { ShanghaiError, TooLargeError } from "../common/errors.ts";
import { FRAME_BYTES_MAX, FRAME_HEADER_BYTES } from "../common/limits.ts";
import { takeFrameBytes } from "../common/value_slab.ts";

/** The node-to-node protocol this build speaks; the handshake refuses any other. */
export const PROTOCOL_VERSION = 1;
/** Message type names are short ASCII words such as `cluster.ping`. */
export const TYPE_CHARS_MAX = 64;

/** A peer sent bytes that are not a valid frame (or broke the handshake rules). */
export class ProtocolError extends ShanghaiError {
  override name = "ProtocolError";
  constructor(message: string, options?: ErrorOptions) {
    super("bad_request", message, options);
  }
}

/** One decoded frame. */
export interface Frame {
  version: number;
  type: string;
  body: unknown;
  /** Bytes the frame took on the wire, header included (set by {@link FrameDecoder}). */
  bytes?: number;
}

const encoder = new Encoder({ useRecords: false, mapsAsObjects: true });
const decoder = new Decoder({ useRecords: false, mapsAsObjects: true });

/**
 * A byte string given as the parts it is made of, as one field of a frame's body: the frame
 * is encoded with the parts written straight into it, where joining them first copied every
 * byte once more. A leader's batch is its records read from the WAL, about 100 KiB: the join
 * and cbor-x's copy of it were fresh memory on every batch, and each first touch of a page
 * costs about 12 µs on our VMs (docs/BENCHMARKS.md, session 40). It decodes as a Uint8Array.
 */
export class ByteParts {
  readonly parts: readonly Uint8Array[];
  readonly byteLength: number;

  constructor(parts: readonly Uint8Array[]) {
    this.parts = parts;
    let bytes = 0;
    for (const part of parts) bytes += part.length;
    this.byteLength = bytes;
  }

  /** The parts as one array. */
  join(): Uint8Array {
    return concatBytes(this.parts, this.byteLength);
  }
}

/** The one field of `body` that is {@link ByteParts}, if any; throws if there are more. */
function bytePartsField(body: unknown): string | undefined {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return undefined;
  let found: string | undefined;
  for (const key in body) {
    if ((body as Record<string, unknown>)[key] instanceof ByteParts) {
      if (found !== undefined) {
        throw new TypeError("A frame body holds at most one ByteParts field");
      }
      found = key;
    }
  }
  return found;
}

/**
 * `body` with its {@link ByteParts} field joined, as a frame delivers it: for transports that
 * hand bodies over without encoding them (the in-process networks of the tests).
 */
export function withJoinedBytes(body: unknown): unknown {
  const key = bytePartsField(body);
  if (key === undefined) return body;
  const b = body as Record<string, unknown>;
  return { ...b, [key]: (b[key] as ByteParts).join() };
}

/** Encodes one frame; throws {@link TooLargeError} when the payload is over `bytesMax`. */
export function encodeFrame(
  type: string,
  body: unknown,
  options: { version?: number; bytesMax?: number } = {},
): Uint8Array {
  const version = options.version ?? PROTOCOL_VERSION;
  const bytesMax = options.bytesMax ?? FRAME_BYTES_MAX;
  const partsKey = bytePartsField(body);
  if (partsKey !== undefined) {
    return encodeWithParts(version, type, body as Record<string, unknown>, partsKey, bytesMax);
  }
  const payload = encoder.encode([version, type, body]);
  if (payload.length > bytesMax) {
    throw new TooLargeError(`a "${type}" frame`, payload.length, bytesMax);
  }
  const out = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
  out.set(payload, FRAME_HEADER_BYTES);
  return sealFrame(out);
}

/** Writes the header (length, CRC) of a frame whose payload `out` already holds. */
function sealFrame(out: Uint8Array): Uint8Array {
  const payload = out.subarray(FRAME_HEADER_BYTES);
  const view = new DataView(out.buffer, out.byteOffset, FRAME_HEADER_BYTES);
  view.setUint32(0, payload.length, true);
  view.setUint32(4, crc32(payload), true);
  return out;
}

const CBOR_ARRAY_3 = 0x83;
/** Tag 64 (RFC 8746, a uint8 typed array), which cbor-x puts before a Uint8Array's bytes. */
const CBOR_TAG_UINT8_ARRAY = Uint8Array.of(0xd8, 0x40);
const CBOR_MAJOR_BYTES = 2;
const CBOR_MAJOR_MAP = 5;

/** A CBOR head (major type, argument) in the fewest bytes, as cbor-x writes lengths. */
function cborHead(major: number, value: number): Uint8Array {
  const m = major << 5;
  if (value < 24) return Uint8Array.of(m | value);
  if (value < 0x100) return Uint8Array.of(m | 24, value);
  if (value < 0x10000) return Uint8Array.of(m | 25, value >> 8, value & 0xff);
  const head = new Uint8Array(5);
  head[0] = m | 26;
  new DataView(head.buffer).setUint32(1, value);
  return head;
}

/**
 * The frame of `[version, type, body]` with `body[partsKey]` (ByteParts) written as the map's
 * last entry, its parts copied straight into the frame (tagged as cbor-x tags a Uint8Array, so
 * it decodes as one): cbor-x encodes the rest of the body, and the map's head is rewritten to
 * count one entry more. The same CBOR as cbor-x's encoding of the body with that field last
 * (frame_test.ts checks it byte for byte).
 */
function encodeWithParts(
  version: number,
  type: string,
  body: Record<string, unknown>,
  partsKey: string,
  bytesMax: number,
): Uint8Array {
  const parts = body[partsKey] as ByteParts;
  const rest: Record<string, unknown> = {};
  for (const key in body) if (key !== partsKey) rest[key] = body[key];
  // cbor-x returns views into a buffer its next call may reuse: copy the small ones.
  const head = encoder.encode([version, type]).slice(1); // without the 2-array's own head
  const key = encoder.encode(partsKey).slice();
  const map = encoder.encode(rest);
  const info = map[0] & 31;
  if (map[0] >> 5 !== CBOR_MAJOR_MAP || info > 26) {
    throw new TypeError("cbor-x did not encode the frame body as a definite-length map");
  }
  const mapHeadBytes = info < 24 ? 1 : 1 + (1 << (info - 24));
  let count = info < 24 ? info : 0;
  for (let i = 1; i < mapHeadBytes; i++) count = count * 256 + map[i];
  // cbor-x reserves two bytes for a map's count (info 25): keep its width where it fits.
  const mapHead = info === 25 && count + 1 < 0x10000
    ? Uint8Array.of(map[0], (count + 1) >> 8, (count + 1) & 0xff)
    : cborHead(CBOR_MAJOR_MAP, count + 1);
  const bytesHead = cborHead(CBOR_MAJOR_BYTES, parts.byteLength);
  const payloadBytes = 1 + head.length + mapHead.length + (map.length - mapHeadBytes) +
    key.length + CBOR_TAG_UINT8_ARRAY.length + bytesHead.length + parts.byteLength;
  if (payloadBytes > bytesMax) {
    throw new TooLargeError(`a "${type}" frame`, payloadBytes, bytesMax);
  }
  const out = new Uint8Array(FRAME_HEADER_BYTES + payloadBytes);
  out[FRAME_HEADER_BYTES] = CBOR_ARRAY_3;
  const pieces = [head, mapHead, map.subarray(mapHeadBytes), key, CBOR_TAG_UINT8_ARRAY, bytesHead];
  copyParts(parts.parts, out, copyParts(pieces, out, FRAME_HEADER_BYTES + 1));
  return sealFrame(out);
}

/** Decodes and checks one payload whose length and CRC already passed. */
export function decodePayload(payload: Uint8Array): Frame {
  let raw: unknown;
  try {
    raw = decoder.decode(payload);
  } catch (cause) {
    throw new ProtocolError(`Cannot decode frame: malformed CBOR (${(cause as Error).message})`);
  }
  if (!Array.isArray(raw) || raw.length !== 3) {
    throw new ProtocolError("Cannot decode frame: payload is not [version, type, body]");
  }
  const [version, type, body] = raw;
  if (!Number.isSafeInteger(version) || version < 1) {
    throw new ProtocolError(`Cannot decode frame: bad protocol version ${JSON.stringify(version)}`);
  }
  if (typeof type !== "string" || type.length === 0 || type.length > TYPE_CHARS_MAX) {
    throw new ProtocolError("Cannot decode frame: bad message type");
  }
  return { version, type, body };
}

/**
 * Splits a byte stream into frames. Feed it chunks as they arrive, at any split points; it
 * holds at most one frame's bytes. `bytesMax` can be raised once the handshake is done, so an
 * unauthenticated peer never makes the node buffer more than a handshake frame.
 *
 * It keeps nothing of a chunk it is given: what it needs later (a frame's payload, the part of
 * a header or payload that arrived) is copied out, so the caller may read into the same buffer
 * again. Each byte is copied once at most: a payload that a chunk holds whole is copied at its
 * own length; one that spans chunks goes into a slot of its final size, and the caller may
 * read the rest of it straight there ({@link FrameDecoder.spare}, {@link FrameDecoder.filled}),
 * with no copy at all. (Keeping the chunks and joining them when a frame was whole copied a
 * large frame twice, and was 8% of a catching-up follower's time.)
 */
export class FrameDecoder {
  #bytesMax: number;
  // A header that arrived split; complete once headerFilled reaches FRAME_HEADER_BYTES.
  readonly #header = new Uint8Array(FRAME_HEADER_BYTES);
  readonly #headerView = new DataView(this.#header.buffer);
  #headerFilled = 0;
  // The payload in progress (its header was whole and checked), filled to payloadFilled.
  #payload: Uint8Array | undefined;
  #payloadFilled = 0;
  #crc = 0;

  constructor(bytesMax: number = FRAME_BYTES_MAX) {
    this.#bytesMax = bytesMax;
  }

  set bytesMax(value: number) {
    this.#bytesMax = value;
  }

  /** Bytes received but not yet part of a whole frame (a payload's header included). */
  get bufferedBytes(): number {
    return this.#payload === undefined
      ? this.#headerFilled
      : FRAME_HEADER_BYTES + this.#payloadFilled;
  }

  /**
   * The part of the frame in progress still to come, to read into directly (then call
   * {@link filled}); undefined while no payload is in progress.
   */
  spare(): Uint8Array | undefined {
    return this.#payload?.subarray(this.#payloadFilled);
  }

  /** `count` bytes were read into {@link spare}; returns the frame when it is now whole. */
  filled(count: number): Frame[] {
    const payload = this.#payload;
    if (payload === undefined || count < 0 || this.#payloadFilled + count > payload.length) {
      throw new RangeError(`Cannot count ${count} bytes filled: no room for them`);
    }
    this.#payloadFilled += count;
    return this.#payloadFilled === payload.length ? [this.#finish()] : [];
  }

  /** Takes `chunk` (kept no longer than the call) and returns every whole frame now available. */
  push(chunk: Uint8Array): Frame[] {
    const frames: Frame[] = [];
    let at = 0;
    while (at < chunk.length) {
      const payload = this.#payload;
      if (payload !== undefined) {
        const count = Math.min(chunk.length - at, payload.length - this.#payloadFilled);
        payload.set(chunk.subarray(at, at + count), this.#payloadFilled);
        this.#payloadFilled += count;
        at += count;
        if (this.#payloadFilled === payload.length) frames.push(this.#finish());
        continue;
      }
      let length: number;
      if (this.#headerFilled === 0 && chunk.length - at >= FRAME_HEADER_BYTES) {
        const view = new DataView(chunk.buffer, chunk.byteOffset + at, FRAME_HEADER_BYTES);
        length = this.#checkLength(view.getUint32(0, true));
        this.#crc = view.getUint32(4, true);
        at += FRAME_HEADER_BYTES;
      } else {
        const count = Math.min(chunk.length - at, FRAME_HEADER_BYTES - this.#headerFilled);
        this.#header.set(chunk.subarray(at, at + count), this.#headerFilled);
        this.#headerFilled += count;
        at += count;
        if (this.#headerFilled < FRAME_HEADER_BYTES) break;
        this.#headerFilled = 0;
        length = this.#checkLength(this.#headerView.getUint32(0, true));
        this.#crc = this.#headerView.getUint32(4, true);
      }
      // Payloads go into shared slabs (value_slab.ts): a batch's values stay where they arrived.
      this.#payload = takeFrameBytes(length);
      if (chunk.length - at >= length) {
        this.#payload.set(chunk.subarray(at, at + length));
        this.#payloadFilled = length;
        at += length;
        frames.push(this.#finish());
      } else {
        this.#payloadFilled = 0;
      }
    }
    return frames;
  }

  /** Called at end of stream: leftover bytes mean the peer sent a truncated frame. */
  end(): void {
    if (this.bufferedBytes > 0) {
      throw new ProtocolError(
        `Cannot read frame: stream ended ${this.bufferedBytes} bytes into a frame`,
      );
    }
  }

  #checkLength(length: number): number {
    if (length === 0) throw new ProtocolError("Cannot read frame: zero length");
    if (length > this.#bytesMax) {
      throw new ProtocolError(
        `Cannot read frame: ${length} bytes is over the limit of ${this.#bytesMax}`,
      );
    }
    return length;
  }

  /** The payload in progress is whole: checks its CRC and decodes it. */
  #finish(): Frame {
    const payload = this.#payload!;
    this.#payload = undefined;
    this.#payloadFilled = 0;
    if (crc32(payload) !== this.#crc) {
      throw new ProtocolError("Cannot read frame: checksum mismatch");
    }
    return { ...decodePayload(payload), bytes: FRAME_HEADER_BYTES + payload.length };
  }
}
