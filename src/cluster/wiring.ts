/**
 * The glue between a pure {@link Membership} and a {@link PeerTransport}, shared by the real
 * driver (membership_driver.ts) and the simulator, so both exercise the same path.
 *
 * @module
 */
import type { Membership, Outbox } from "./membership.ts";
import { MESSAGE_TYPES } from "./membership.ts";
import type { PeerTransport } from "./transport.ts";

/** Sends every queued envelope; returns the outbox so the caller can publish its events. */
export function flushOutbox(membership: Membership, transport: PeerTransport): Outbox {
  const outbox = membership.drain();
  for (const envelope of outbox.send) transport.send(envelope.to, envelope.type, envelope.body);
  return outbox;
}

/**
 * Routes membership messages and peer-up notices from `transport` into `membership`, flushing
 * after each. Returns the function that unbinds the peer listeners.
 */
export function bindMembership(
  membership: () => Membership,
  transport: PeerTransport,
  nowMs: () => number,
  onOutbox: (outbox: Outbox) => void,
  onMalformed: (from: string, type: string) => void = () => {},
): () => void {
  for (const type of MESSAGE_TYPES) {
    transport.handle(type, (from, body) => {
      const m = membership();
      if (!m.receive(from, type, body, nowMs())) onMalformed(from, type);
      onOutbox(flushOutbox(m, transport));
    });
  }
  const offUp = transport.onPeerUp((peerId) => {
    const m = membership();
    m.onPeerUp(peerId, nowMs());
    onOutbox(flushOutbox(m, transport));
  });
  const offDown = transport.onPeerDown((peerId) => membership().onPeerDown(peerId, nowMs()));
  return () => {
    offUp();
    offDown();
  };
}
