/**
 * A node's cluster layer: the TCP transport on the node port, the membership driver, the
 * data directory's cluster state, and the operations the HTTP API exposes (members, join,
 * leave). Built by ShanghaiNode after recovery.
 *
 * @module
 */
import type { Clock } from "../common/clock.ts";
import { ShanghaiError } from "../common/errors.ts";
import type { Store } from "../storage/kv/store.ts";
import type { EventBus } from "../telemetry/events.ts";
import type { Logger } from "../telemetry/log.ts";
import { adoptClusterId, readClusterState, writeClusterState } from "./cluster_state.ts";
import type { DetectorKind } from "./failure_detector.ts";
import type { Identity } from "./identity.ts";
import { type ClusterHealth, type MemberInfo, MembershipDriver } from "./membership_driver.ts";
import { parseSeed } from "./seeds.ts";
import { TcpTransport, type TransportStats } from "./tcp_transport.ts";

const FORWARD_TIMEOUT_MS = 10_000;
/**
 * A seed that refuses this node's id as in use by a live connection (`id_in_use`) is dialed
 * again, every ID_IN_USE_RETRY_EVERY_MS, for this many suspect periods: a peer that was busy or
 * stopped when this node's previous process died can still take the old connection for live,
 * until it has been silent for one suspect period (the transport's staleAfterMs). Past that,
 * another live node holds the id.
 */
const ID_IN_USE_RETRY_SUSPECT_PERIODS = 3;
const ID_IN_USE_RETRY_EVERY_MS = 200;
/** Keepalive pings a live idle link carries within one link timeout (suspect-after-ms). */
const LINK_PINGS_PER_TIMEOUT = 4;

/** The settings the cluster layer reads: the node's config (NodeConfig) has them all. */
export interface ClusterConfig {
  dataDir: string;
  /** Address to listen on and advertise on the node port. */
  host: string;
  port: number;
  /** Seeds, as given (`host:port`, `id@host:port` or `id@host`). */
  join: string[];
  heartbeatIntervalMs: number;
  suspectAfterMs: number;
  downAfterMs: number;
  failureDetector: DetectorKind;
}

export interface NodeClusterOptions {
  config: ClusterConfig;
  identity: Identity;
  store: Store;
  httpAddress: () => string;
  onIdentityChanged: (identity: Identity) => void;
  /** Called once this node has left the cluster: the process should stop. */
  onLeft: () => void;
  /**
   * Called with the transport as soon as it listens, before any peer can be heard: the place
   * for the layers above to register their message handlers. A frame of a type with no
   * handler yet is dropped, and a peer's `repl.open` that arrived while this node was still
   * joining its seeds went unanswered until the peer's resend timeout (1 s). `knewPeers`: the
   * members saved when it last ran (cluster.json) include another node.
   */
  onTransport?: (transport: TcpTransport, knewPeers: boolean) => void;
  clock: Clock;
  events: EventBus;
  logger: Logger;
}

/**
 * Serves the HTTP API's cluster routes: it has the shape of their `ClusterControl`, checked
 * where node.ts mounts them (an `implements` here would import the API layer from below it).
 */
export class NodeCluster {
  readonly transport: TcpTransport;
  readonly membership: MembershipDriver;
  readonly #options: NodeClusterOptions;
  #identity: Identity;

  readonly #joiner: { wants: boolean };

  private constructor(
    options: NodeClusterOptions,
    transport: TcpTransport,
    membership: MembershipDriver,
    joiner: { wants: boolean },
  ) {
    this.#joiner = joiner;
    this.#options = options;
    this.#identity = options.identity;
    this.transport = transport;
    this.membership = membership;
  }

  /**
   * Listens on the node port, starts membership, and dials the seeds. A seed that refuses this
   * node (another cluster holding data, a taken node id, another protocol version) fails the
   * start with its reason; a seed that cannot be reached is retried in the background.
   */
  static async start(options: NodeClusterOptions): Promise<NodeCluster> {
    const { config, logger } = options;
    const dataDir = config.dataDir;
    const saved = await readClusterState(dataDir);
    const incarnation = (saved?.incarnation ?? 0) + 1;
    // Durable before anyone hears the new incarnation, so a restart always goes higher.
    await writeClusterState(dataDir, { format: 1, incarnation, members: saved?.members ?? [] });
    let cluster: NodeCluster | undefined = undefined;
    let identity = options.identity;
    // Only a joiner adopts a cluster id: a node started without seeds founds its cluster and
    // keeps its id, so joiners racing to a fresh founder all end in the founder's cluster
    // (with both sides free to adopt, the founder could adopt one joiner's id after another
    // joiner had already adopted the founder's). `node join` makes a running node a joiner.
    const joiner = { wants: config.join.length > 0 };
    const transport = TcpTransport.listen({
      nodeId: identity.nodeId,
      clusterId: () => identity.clusterId,
      fresh: () => options.store.lastLsn === 0,
      founder: () => !joiner.wants,
      alone: () =>
        cluster === undefined ||
        cluster.membership.members().every((m) => m.self || m.state === "left"),
      adoptClusterId: async (clusterId) => {
        identity = await adoptClusterId(dataDir, identity, clusterId);
        if (cluster) cluster.#identity = identity;
        options.onIdentityChanged(identity);
      },
      hostname: config.host,
      port: config.port,
      httpAddress: options.httpAddress,
      logger,
      monoMs: () => options.clock.monoMs(),
      staleAfterMs: config.suspectAfterMs,
      // A link silent for as long as a member takes to become suspect is dropped (a path that
      // loses packets never errors); pings keep live idle links well inside that bound.
      keepaliveMs: Math.min(
        config.heartbeatIntervalMs,
        config.suspectAfterMs / LINK_PINGS_PER_TIMEOUT,
      ),
      linkTimeoutMs: config.suspectAfterMs,
      onLinkDropped: (peer, silentMs) =>
        options.events.emit("cluster.link.dropped", { peer, silentMs }),
    });
    options.onTransport?.(
      transport,
      (saved?.members ?? []).some((m) => m.id !== identity.nodeId),
    );
    const membership = new MembershipDriver({
      transport,
      self: { id: identity.nodeId, address: transport.address, httpAddress: options.httpAddress() },
      incarnation,
      known: saved?.members ?? [],
      seeds: config.join.map((s) => parseSeed(s)),
      heartbeatIntervalMs: config.heartbeatIntervalMs,
      suspectAfterMs: config.suspectAfterMs,
      downAfterMs: config.downAfterMs,
      detector: config.failureDetector,
      clock: options.clock,
      events: options.events,
      logger,
      persist: (members, incarnationNow) =>
        writeClusterState(dataDir, { format: 1, incarnation: incarnationNow, members }),
      // No member remembered: a fresh directory, or one restored onto a new machine.
      joining: (saved?.members ?? []).length === 0,
    });
    cluster = new NodeCluster(options, transport, membership, joiner);
    membership.start();
    const answers = await membership.joinSeeds();
    const retryUntil = options.clock.monoMs() +
      ID_IN_USE_RETRY_SUSPECT_PERIODS * config.suspectAfterMs;
    for (const answer of answers) {
      let logged = false;
      while (
        !answer.result.ok && answer.result.refused && answer.result.code === "id_in_use" &&
        options.clock.monoMs() < retryUntil
      ) {
        if (!logged) {
          logger.warn("A seed takes this node's id for in use; dialing it again", {
            seed: answer.seed.address,
            reason: answer.result.reason,
            advice:
              "Normal for a moment after a restart while the seed has not noticed the previous process is gone; if it persists, another live node has this --node-id",
          });
          logged = true;
        }
        await new Promise((resolve) => setTimeout(resolve, ID_IN_USE_RETRY_EVERY_MS));
        answer.result = await membership.join(answer.seed.address);
      }
    }
    const refused = answers.find((a) => !a.result.ok && a.result.refused);
    if (refused && !refused.result.ok) {
      membership.stop();
      transport.close();
      throw new ShanghaiError(
        "conflict",
        `Cannot join the cluster through ${refused.seed.address}: ${refused.result.reason}`,
      );
    }
    for (const { seed, result } of answers) {
      if (!result.ok) {
        logger.warn("Seed not reachable yet; retrying in the background", {
          seed: seed.address,
          reason: result.reason,
        });
      }
    }
    logger.info("Cluster layer started", {
      nodeAddress: transport.address,
      incarnation,
      detector: config.failureDetector,
      heartbeatIntervalMs: config.heartbeatIntervalMs,
      suspectAfterMs: config.suspectAfterMs,
      downAfterMs: config.downAfterMs,
      seeds: config.join,
    });
    return cluster;
  }

  clusterId(): string {
    return this.#identity.clusterId;
  }

  selfId(): string {
    return this.#identity.nodeId;
  }

  members(): MemberInfo[] {
    return this.membership.members();
  }

  /** See {@link MembershipDriver.joined}. */
  joined(): boolean {
    return this.membership.joined();
  }

  /** See {@link Membership.memberIds}. */
  memberIds(): readonly string[] {
    return this.membership.memberIds();
  }

  health(): ClusterHealth {
    return this.membership.health();
  }

  transportStats(): TransportStats {
    return this.transport.stats();
  }

  async join(address: string): Promise<{ peerId: string; clusterId: string }> {
    if (this.membership.left) {
      throw new ShanghaiError(
        "conflict",
        "Cannot join: this node has left its cluster; restart it to join again",
      );
    }
    this.#joiner.wants = true;
    const result = await this.membership.join(address);
    if (result.ok) return { peerId: result.peerId, clusterId: this.#identity.clusterId };
    if (result.refused) {
      throw new ShanghaiError("conflict", `Cannot join through ${address}: ${result.reason}`);
    }
    throw new ShanghaiError("unreachable", `Cannot join through ${address}: ${result.reason}`);
  }

  async leave(nodeId: string | undefined): Promise<Record<string, unknown>> {
    const selfId = this.#identity.nodeId;
    if (nodeId === undefined || nodeId === selfId) {
      const acknowledged = await this.membership.leave();
      this.#options.logger.info("Left the cluster; stopping", { acknowledged });
      // Answer the request first, then stop the process.
      setTimeout(() => this.#options.onLeft(), 50);
      return { left: selfId, acknowledged, stopping: true };
    }
    const member = this.membership.member(nodeId);
    if (!member) {
      throw new ShanghaiError(
        "not_found",
        `Cannot remove node "${nodeId}": it is not a member of this cluster`,
      );
    }
    if (member.state === "left") return { left: nodeId, already: true };
    if (member.state === "down") {
      this.membership.remove(nodeId);
      return { left: nodeId, removed: true };
    }
    // It is up (or suspect): ask it to leave by itself, so it drains and stops.
    try {
      const response = await fetch(`http://${member.httpAddress}/v1/cluster/leave`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "{}",
        signal: AbortSignal.timeout(FORWARD_TIMEOUT_MS),
      });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error(`it answered ${response.status}: ${JSON.stringify(body)}`);
      return { ...body, forwardedTo: member.httpAddress };
    } catch (error) {
      if (member.state === "suspect" && this.membership.remove(nodeId) === "removed") {
        return { left: nodeId, removed: true };
      }
      throw new ShanghaiError(
        "unreachable",
        `Cannot ask node "${nodeId}" at ${member.httpAddress} to leave: ${
          (error as Error).message
        }; if it is gone for good, run this again once it shows down`,
      );
    }
  }

  async stop(): Promise<void> {
    this.membership.stop();
    this.transport.close();
    await Promise.resolve();
  }
}
