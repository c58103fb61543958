import assert from "node:assert/strict";
import {
  decodeEntry,
  decodeEntryDirect,
  decodeEntryGeneric,
  encodeEntry,
  encodeEntryGeneric,
  type Entry,
  internString,
  type Op,
  peekEntryIdentity,
  peekEntryLsn,
  validateKey,
} from "./entry.ts";
import { Random } from "./random.ts";

const SEED = 20261122;

/** Plain bytes: cbor-x hands back a Buffer, the direct encoder a Uint8Array. */
const bytes = (b: Uint8Array) => Uint8Array.from(b);

function randomString(random: Random, ascii: boolean): string {
  const length = random.chance(0.3)
    ? random.int(24)
    : random.int(random.chance(0.1) ? 70_000 : 300);
  let out = "";
  for (let i = 0; i < length; i++) {
    out += ascii || random.chance(0.9)
      ? String.fromCharCode(0x20 + random.int(0x5f))
      : String.fromCharCode(0xa0 + random.int(0x2000));
  }
  return out;
}

function randomCount(random: Random): number {
  const bounds = [24, 0x100, 0x10000, 2 ** 32, Number.MAX_SAFE_INTEGER];
  const bound = bounds[random.int(bounds.length)];
  return random.chance(0.2) ? bound - 1 : Math.floor(random.next() * bound);
}

function randomEntry(random: Random): Entry {
  const ops: Op[] = ["put", "delete", "append"];
  const op = ops[random.int(3)];
  const ascii = random.chance(0.8);
  const valueBytes = random.chance(0.1) ? random.int(70_000) : random.int(2048);
  return {
    lsn: randomCount(random),
    origin: randomString(random, ascii) || "n",
    seq: randomCount(random),
    hlc: randomCount(random),
    op,
    key: op === "append" ? "" : randomString(random, ascii),
    value: op === "delete" ? null : new Uint8Array(valueBytes).map(() => random.int(256)),
    contentType: random.chance(0.5) ? "application/json" : randomString(random, true),
    prevHlc: random.chance(0.5) ? 0 : randomCount(random),
    prevOrigin: random.chance(0.5) ? "" : randomString(random, ascii),
  };
}

Deno.test("encodeEntry writes the same bytes as cbor-x for any entry", () => {
  const random = new Random(SEED);
  let direct = 0;
  for (let i = 0; i < 1000; i++) {
    const entry = randomEntry(random);
    const fast = encodeEntry(entry);
    // The direct encoder returns a plain Uint8Array, cbor-x a Buffer: count the direct ones.
    if (Object.getPrototypeOf(fast) === Uint8Array.prototype) direct++;
    assert.deepEqual(bytes(fast), bytes(encodeEntryGeneric(entry)), `seed ${SEED}, entry ${i}`);
    assert.deepEqual(decodeEntry(fast), entry, `seed ${SEED}, entry ${i}`);
  }
  assert.ok(direct > 500, `only ${direct} of 1000 entries took the direct encoder`);
});

Deno.test("encodeEntry hands uncommon values to cbor-x unchanged", () => {
  const base: Entry = {
    lsn: 1,
    origin: "n1",
    seq: 1,
    hlc: 1,
    op: "put",
    key: "k",
    value: new Uint8Array([1, 2, 3]),
    contentType: "",
    prevHlc: 0,
    prevOrigin: "",
  };
  class Bytes extends Uint8Array {}
  for (
    const entry of [
      { ...base, key: "clé" },
      { ...base, value: new Bytes([1, 2, 3]) },
      { ...base, lsn: 1.5 },
      { ...base, hlc: -1 },
    ]
  ) {
    assert.deepEqual(bytes(encodeEntry(entry)), bytes(encodeEntryGeneric(entry)));
  }
});

Deno.test("validateKey measures UTF-8 as TextEncoder does", () => {
  const encoder = new TextEncoder();
  const limit = 1024;
  for (const unit of ["a", "é", "€", "😀"]) {
    const fits = unit.repeat(Math.floor(limit / encoder.encode(unit).length));
    validateKey(fits);
    assert.throws(
      () => validateKey(fits + "a".repeat(limit - encoder.encode(fits).length + 1)),
      /over the limit/,
    );
  }
  // A lone surrogate counts as the 3 bytes of U+FFFD, then fails the well-formed check.
  for (const unit of ["\ud800", "\udc00", "\ud800a"]) {
    const fits = unit.repeat(Math.floor(limit / encoder.encode(unit).length));
    assert.throws(() => validateKey(fits), /not well-formed/);
    assert.throws(
      () => validateKey(fits + "a".repeat(limit - encoder.encode(fits).length + 1)),
      /over the limit/,
    );
  }
});

Deno.test("peekEntryLsn reads the LSN that decodeEntry reads, without decoding", () => {
  const random = new Random(SEED + 1);
  for (let i = 0; i < 500; i++) {
    const entry = randomEntry(random);
    const encoded = encodeEntry(entry);
    assert.equal(peekEntryLsn(encoded), decodeEntry(encoded).lsn, `seed ${SEED + 1}, entry ${i}`);
    assert.equal(peekEntryLsn(encodeEntryGeneric(entry)), entry.lsn);
  }
  assert.equal(peekEntryLsn(new Uint8Array([0x8b, 0x02, 0x05])), undefined);
  assert.equal(peekEntryLsn(new Uint8Array([0x8b, 0x01, 0x19, 0x01])), undefined);
  assert.equal(peekEntryLsn(new Uint8Array([0x8b, 0x01, 0x20])), undefined);
});

Deno.test("peekEntryIdentity reads what decodeEntry reads, or declines", () => {
  const random = new Random(SEED + 2);
  let peeked = 0;
  for (let i = 0; i < 1000; i++) {
    const entry = randomEntry(random);
    // Short node ids, and tagged origins of long ones (past a one-byte text head).
    const shape = random.int(10);
    if (shape < 4) entry.origin = `n${random.int(1000)}`;
    else if (shape < 7) entry.origin = `shanghai-node-${random.int(1000)}~0a1b2c3d`;
    for (const encoded of [encodeEntry(entry), bytes(encodeEntryGeneric(entry))]) {
      const identity = peekEntryIdentity(encoded);
      const decoded = decodeEntry(encoded);
      // The control characters in this range are meant: the peek takes any ASCII origin.
      // deno-lint-ignore no-control-regex
      const ascii = /^[\x01-\x7f]+$/.test(entry.origin);
      assert.equal(identity !== undefined, ascii, `seed ${SEED + 2}, entry ${i}: ${entry.origin}`);
      if (identity) {
        peeked++;
        assert.deepEqual(identity, { lsn: decoded.lsn, origin: decoded.origin, seq: decoded.seq });
      }
    }
  }
  assert.ok(peeked > 500, `only ${peeked} peeked`);
  for (
    const bad of [
      [0x8b, 0x01, 0x05],
      [0x8b, 0x01, 0x05, 0x62, 0x6e],
      [0x8b, 0x01, 0x05, 0x61, 0xc3, 0x01],
      [0x8b, 0x01, 0x05, 0x61, 0x6e, 0x19, 0x01],
      [0x8b, 0x01, 0x05, 0x41, 0x6e, 0x01],
    ]
  ) assert.equal(peekEntryIdentity(new Uint8Array(bad)), undefined, JSON.stringify(bad));
});

function concat(encoded: Uint8Array, byte: number): Uint8Array {
  const out = new Uint8Array(encoded.length + 1);
  out.set(encoded);
  out[encoded.length] = byte;
  return out;
}

/** What a decoder made of some bytes: the entry, or the error's message. */
function outcome(decode: (b: Uint8Array) => Entry, encoded: Uint8Array): Entry | string {
  try {
    return decode(encoded);
  } catch (error) {
    return (error as Error).message;
  }
}

Deno.test("decodeEntryDirect decodes what cbor-x decodes, or declines", () => {
  const random = new Random(SEED + 3);
  let direct = 0;
  let mutants = 0;
  for (let i = 0; i < 1000; i++) {
    const entry = randomEntry(random);
    for (const encoded of [encodeEntry(entry), bytes(encodeEntryGeneric(entry))]) {
      const fast = decodeEntryDirect(encoded);
      if (fast !== undefined) {
        direct++;
        assert.deepEqual(fast, entry, `seed ${SEED + 3}, entry ${i}`);
        assert.equal(Object.getPrototypeOf(fast.value ?? new Uint8Array()), Uint8Array.prototype);
      }
      assert.deepEqual(decodeEntry(encoded), entry, `seed ${SEED + 3}, entry ${i}`);
    }
    // Damaged bytes, as a peer could send them under a valid CRC: a flipped byte, a cut, or
    // bytes after the entry. Whatever the direct decoder accepts, cbor-x decodes alike, and
    // decodeEntry answers as cbor-x does.
    const encoded = encodeEntry(entry);
    for (let m = 0; m < 5; m++) {
      const kind = random.int(3);
      const at = random.int(Math.min(encoded.length, 64));
      const mutant = kind === 0
        ? encoded.map((b, j) => j === at ? random.int(256) : b)
        : kind === 1
        ? encoded.slice(0, at)
        : concat(encoded, random.int(256));
      const fast = decodeEntryDirect(mutant);
      const reference = outcome(decodeEntryGeneric, mutant);
      if (fast !== undefined) {
        mutants++;
        assert.deepEqual(fast, reference, `seed ${SEED + 3}, entry ${i}, mutant ${m}`);
      }
      assert.deepEqual(outcome(decodeEntry, mutant), reference);
    }
  }
  assert.ok(direct > 800, `only ${direct} of 2000 encodings took the direct decoder`);
  assert.ok(mutants > 100, `only ${mutants} mutants took the direct decoder`);
});

Deno.test("internString returns the same text, past its bound too", () => {
  const texts = [
    "application/json",
    "",
    "n1",
    "caf\u00e9",
    "lone \ud800 surrogate",
    "x".repeat(300),
  ];
  for (let i = 0; i < 300; i++) texts.push(`type/${i}`);
  for (const text of texts) {
    assert.equal(internString(text), text);
    assert.equal(internString(`${text}`), text, "a second time, from the shared copy");
  }
});
