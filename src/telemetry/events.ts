/**
 * The in-process event bus. Names follow seed 000's telemetry events; measurements and
 * metadata travel together in one plain object per event.
 *
 * @module
 */

export interface EventMap {
  "wal.write.completed": {
    durationMs: number;
    syncMs: number;
    bytes: number;
    entries: number;
    /** Waited for writers expected back before the batch was cut (0: no wait). */
    gatherMs: number;
  };
  "wal.repaired": { message: string };
  "wal.preallocate.failed": { reason: string };
  "snapshot.completed": { lsn: number; keys: number; bytes: number; durationMs: number };
  "retention.completed": { segmentsRemoved: number; bytesRemoved: number; durationMs: number };
  "cluster.heartbeat.completed": { rttMs: number; fromNode: string; toNode: string };
  "cluster.member.changed": {
    nodeId: string;
    state: string;
    previous?: string;
    address?: string;
    /** joined, up, suspect, down or left. */
    kind?: string;
    incarnation?: number;
  };
  /** A peer link was dropped: nothing arrived on it for the link timeout (tcp_transport.ts). */
  "cluster.link.dropped": { peer: string; silentMs: number };
  "replication.lag.changed": { lag: number; follower: string; leader: string };
  "replication.credit.changed": { credit: number; follower: string; leader: string };
  "replication.conflict": { key: string; winnerOrigin: string; loserOrigin: string };
  /** This node began sending its whole key-value state to `follower` (its log could not serve). */
  "replication.snapshot.started": { follower: string };
  /**
   * `follower` came back from a restart holding fewer entries of `origins` origins than it had
   * reported (a fault: a disk that lost flushed writes, say); this node sends it a snapshot.
   */
  "replication.peer.regressed": { follower: string; origins: number };
  /**
   * A peer holds more of this node's own origin than it had numbered here (a rolled-back data
   * directory): `numbered` was the last local number, `peerHolds` the peer's count.
   */
  "replication.origin.behind": { peer: string; numbered: number; peerHolds: number };
  /**
   * A durable batch held peers' entries: for each, the wall-clock ms from its HLC timestamp
   * (taken by its origin when it accepted the write) until this node applied it, so readable.
   */
  "replication.applied": { delaysMs: number[] };
  /**
   * `follower` acknowledged batches of this node's stream: for each, ms from sending it until
   * its ack arrived (the follower's append, fdatasync and answer; see LeaderStream).
   */
  "replication.acked": { follower: string; latenciesMs: readonly number[] };
  "http.request.completed": { method: string; route: string; status: number; durationMs: number };
  /** A repeating timer fired this many ms after it was due (src/telemetry/loop_delay.ts). */
  "process.loop.delay": { delayMs: number };
}

export type EventName = keyof EventMap;
export type Listener<N extends EventName> = (event: EventMap[N], name: N) => void;

export class EventBus {
  #listeners = new Map<EventName, Set<Listener<EventName>>>();

  /** Calls `listener` for each `name` event; returns the function that unsubscribes. */
  on<N extends EventName>(name: N, listener: Listener<N>): () => void {
    let set = this.#listeners.get(name);
    if (!set) this.#listeners.set(name, set = new Set());
    set.add(listener as Listener<EventName>);
    return () => set.delete(listener as Listener<EventName>);
  }

  /** Cheap check so hot paths skip building events nobody listens to. */
  has(name: EventName): boolean {
    return (this.#listeners.get(name)?.size ?? 0) > 0;
  }

  emit<N extends EventName>(name: N, event: EventMap[N]): void {
    const set = this.#listeners.get(name);
    if (!set) return;
    for (const listener of set) {
      try {
        (listener as Listener<N>)(event, name);
      } catch {
        // A subscriber's bug must not break the write path that emitted the event.
      }
    }
  }
}
