/**
 * What readiness needs beyond the store: how far this node lags behind its peers (from
 * `replication.lag.changed` events whose follower is this node) and a recent sample of free
 * disk space.
 *
 * Only lag where this node is the follower counts: a node whose own followers lag is still fit
 * to serve, and turning it away would move load off the node that has the data. A lag entry is
 * forgotten when it falls to 0 or when its leader goes down or leaves (there is nothing to catch
 * up from, and a stale figure must not hold the node out of rotation). The node owns the
 * timer that calls {@link HealthWatch.sampleDisk}; {@link readinessProblems} is pure.
 *
 * @module
 */
import type { EventBus } from "./events.ts";
import { type DiskUsage, readDiskUsage } from "./disk.ts";

export interface HealthLimits {
  /** Not ready while any follower lags more entries than this (0: no limit). */
  readyLagMax: number;
  /** Not ready while the data directory's file system has less free space (0: no floor). */
  minFreeDiskBytes: number;
}

export interface HealthFigures {
  worstLag?: { lag: number; follower: string; leader: string };
  disk?: DiskUsage;
}

/** Reasons the figures break the limits; empty when they do not. */
export function readinessProblems(figures: HealthFigures, limits: HealthLimits): string[] {
  const out: string[] = [];
  const lag = figures.worstLag;
  if (limits.readyLagMax > 0 && lag !== undefined && lag.lag > limits.readyLagMax) {
    out.push(
      `replication lag ${lag.lag} entries (follower ${lag.follower}, leader ${lag.leader}) is over ready-lag-max ${limits.readyLagMax}`,
    );
  }
  const disk = figures.disk;
  if (
    limits.minFreeDiskBytes > 0 && disk !== undefined &&
    disk.availableBytes < limits.minFreeDiskBytes
  ) {
    out.push(
      `free disk ${disk.availableBytes} bytes is below min-free-disk-bytes ${limits.minFreeDiskBytes}`,
    );
  }
  return out;
}

/** Collects lag per follower from the bus and samples disk usage on demand. */
export class HealthWatch {
  readonly #lag = new Map<string, { lag: number; follower: string; leader: string }>();
  readonly #off: () => void;
  readonly #path: string;
  #disk: DiskUsage | undefined;
  #diskError: string | undefined;

  /** `selfId` answers this node's id once its identity is loaded. */
  constructor(events: EventBus, diskPath: string, selfId: () => string | undefined) {
    this.#path = diskPath;
    const offLag = events.on("replication.lag.changed", (e) => {
      if (e.follower !== selfId()) return;
      // A lag of 0 means caught up: forget the pair so the map holds only laggards.
      if (e.lag <= 0) this.#lag.delete(e.leader);
      else this.#lag.set(e.leader, { lag: e.lag, follower: e.follower, leader: e.leader });
    });
    const offMember = events.on("cluster.member.changed", (e) => {
      if (e.state === "down" || e.state === "left" || e.state === "removed") {
        this.#lag.delete(e.nodeId);
      }
    });
    this.#off = () => {
      offLag();
      offMember();
    };
  }

  /** Reads free space now; keeps the last good sample when statfs fails. */
  async sampleDisk(): Promise<DiskUsage | undefined> {
    try {
      this.#disk = await readDiskUsage(this.#path);
      this.#diskError = undefined;
    } catch (error) {
      this.#diskError = (error as Error).message;
    }
    return this.#disk;
  }

  get disk(): DiskUsage | undefined {
    return this.#disk;
  }

  get diskError(): string | undefined {
    return this.#diskError;
  }

  figures(): HealthFigures {
    let worstLag: HealthFigures["worstLag"];
    for (const p of this.#lag.values()) if (!worstLag || p.lag > worstLag.lag) worstLag = p;
    return { worstLag, disk: this.#disk };
  }

  close(): void {
    this.#off();
  }
}
