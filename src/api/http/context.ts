/**
 * What the HTTP routes need from a node. The node implements it; tests can hand in a store
 * directly. Keeping this narrow lets routes run in process through `app.request()`.
 *
 * @module
 */
import type { ReplicationService } from "../../replication/service.ts";
import type { Store } from "../../storage/kv/store.ts";
import type { EventBus } from "../../telemetry/events.ts";
import type { Logger } from "../../telemetry/log.ts";

export interface Readiness {
  ready: boolean;
  /** Why the node is not ready, when it is not. */
  reasons: string[];
}

export interface HttpContext {
  /** The store once recovery is done; undefined before. */
  store(): Store | undefined;
  readiness(): Readiness;
  status(): Promise<Record<string, unknown>> | Record<string, unknown>;
  events: EventBus;
  logger: Logger;
  /** Replication (acks, causal and quorum reads, replicas, digest); absent in bare tests. */
  replication?(): ReplicationService | undefined;
}
