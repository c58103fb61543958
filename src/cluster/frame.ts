/**
 * Node-port framing: `length uint32 LE | CRC-32 uint32 LE of payload | payload`, where the
 * payload is CBOR `[protocolVersion, type, body]`. Every byte from the network is length- and
 * CRC-checked before it is decoded; a bad frame is a {@link ProtocolError} and the connection
 * that sent it is closed.
 *
 * @module
 */
import { Decoder, Encoder } from "cbor-x";
import { crc32 } from "../common/crc32.ts";
import { ShanghaiError, TooLargeError } from "../common/errors.ts";
import { FRAME_BYTES_MAX, FRAME_HEADER_BYTES } from "../common/limits.ts";

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

/** Encodes one frame; throws {@link TooLargeError} when the payload is over `bytesMax`. */
export function encodeFrame(
  type: string,
  body: unknown,
  options: { version?: number; bytesMax?: number } = {},
): Uint8Array {
  const payload = encoder.encode([options.version ?? PROTOCOL_VERSION, type, body]);
  const bytesMax = options.bytesMax ?? FRAME_BYTES_MAX;
  if (payload.length > bytesMax) {
    throw new TooLargeError(`a "${type}" frame`, payload.length, bytesMax);
  }
  const out = new Uint8Array(FRAME_HEADER_BYTES + payload.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, payload.length, true);
  view.setUint32(4, crc32(payload), true);
  out.set(payload, FRAME_HEADER_BYTES);
  return out;
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
 */
export class FrameDecoder {
  // Chunks as received; joined only when a whole frame is present, so a large frame arriving
  // in many small reads costs one copy, not one per read.
  #chunks: Uint8Array[] = [];
  #bytes = 0;
  #bytesMax: number;

  constructor(bytesMax: number = FRAME_BYTES_MAX) {
    this.#bytesMax = bytesMax;
  }

  set bytesMax(value: number) {
    this.#bytesMax = value;
  }

  /** Bytes received but not yet part of a whole frame. */
  get bufferedBytes(): number {
    return this.#bytes;
  }

  /** Appends `chunk` and returns every whole frame now available; throws ProtocolError. */
  push(chunk: Uint8Array): Frame[] {
    if (chunk.length > 0) {
      this.#chunks.push(chunk);
      this.#bytes += chunk.length;
    }
    const frames: Frame[] = [];
    while (this.#bytes >= FRAME_HEADER_BYTES) {
      const header = this.#peek(FRAME_HEADER_BYTES);
      const view = new DataView(header.buffer, header.byteOffset, FRAME_HEADER_BYTES);
      const length = view.getUint32(0, true);
      if (length === 0) throw new ProtocolError("Cannot read frame: zero length");
      if (length > this.#bytesMax) {
        throw new ProtocolError(
          `Cannot read frame: ${length} bytes is over the limit of ${this.#bytesMax}`,
        );
      }
      if (this.#bytes < FRAME_HEADER_BYTES + length) break;
      const crc = view.getUint32(4, true);
      this.#take(FRAME_HEADER_BYTES);
      const payload = this.#take(length);
      if (crc32(payload) !== crc) throw new ProtocolError("Cannot read frame: checksum mismatch");
      frames.push({ ...decodePayload(payload), bytes: FRAME_HEADER_BYTES + length });
    }
    return frames;
  }

  /** Called at end of stream: leftover bytes mean the peer sent a truncated frame. */
  end(): void {
    if (this.#bytes > 0) {
      throw new ProtocolError(`Cannot read frame: stream ended ${this.#bytes} bytes into a frame`);
    }
  }

  #peek(count: number): Uint8Array {
    if (this.#chunks[0].length >= count) return this.#chunks[0].subarray(0, count);
    const out = new Uint8Array(count);
    let at = 0;
    for (const chunk of this.#chunks) {
      const part = chunk.subarray(0, count - at);
      out.set(part, at);
      at += part.length;
      if (at === count) break;
    }
    return out;
  }

  #take(count: number): Uint8Array {
    const first = this.#chunks[0];
    let out: Uint8Array;
    if (first.length >= count) {
      out = first.subarray(0, count);
      if (first.length === count) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(count);
    } else {
      out = new Uint8Array(count);
      let at = 0;
      while (at < count) {
        const chunk = this.#chunks[0];
        const part = chunk.subarray(0, count - at);
        out.set(part, at);
        at += part.length;
        if (part.length === chunk.length) this.#chunks.shift();
        else this.#chunks[0] = chunk.subarray(part.length);
      }
    }
    this.#bytes -= count;
    return out;
  }
}
