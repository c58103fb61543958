/**
 * An in-process network of {@link PeerTransport}s on real time, for tests that run whole
 * nodes in one process: each message is structured-cloned and delivered on a later macrotask,
 * links can be cut and healed, and a test can inject raw frames as if a peer sent them.
 *
 * @module
 */
import { InProcessNetwork, InProcessTransport } from "./_in_process_network.ts";
import { withJoinedBytes } from "../../src/cluster/frame.ts";

export class LoopbackNetwork extends InProcessNetwork<LoopbackTransport> {
  protected createTransport(nodeId: string): LoopbackTransport {
    return new LoopbackTransport(nodeId, this);
  }

  /** Announces every connected pair that is not yet up on both sides. */
  refresh(): void {
    for (const [a, ta] of this.transports) {
      for (const b of this.transports.keys()) {
        if (this.connected(a, b)) ta.fireUp(b);
        else ta.fireDown(b);
      }
    }
  }

  cut(a: string, b: string): void {
    this.setCut(a, b, true);
    this.refresh();
  }

  heal(a: string, b: string): void {
    this.setCut(a, b, false);
    this.refresh();
  }

  isolate(id: string): void {
    for (const other of this.transports.keys()) {
      if (other !== id) this.setCut(id, other, true);
    }
    this.refresh();
  }

  healAll(): void {
    this.clearCuts();
    this.refresh();
  }

  send(from: string, to: string, type: string, body: unknown): boolean {
    if (!this.connected(from, to)) return false;
    const copy = structuredClone(withJoinedBytes(body));
    setTimeout(() => {
      if (this.connected(from, to)) this.transports.get(to)!.deliver(from, type, copy);
    }, 0);
    return true;
  }
}

/** A node's end of a {@link LoopbackNetwork}: offline until the node using it has started. */
export class LoopbackTransport extends InProcessTransport {
  readonly #network: LoopbackNetwork;

  constructor(nodeId: string, network: LoopbackNetwork) {
    super(nodeId, network, { online: false });
    this.#network = network;
  }

  /** Joins the network (call once the node using it is up). */
  start(): void {
    this.online = true;
    this.#network.refresh();
  }

  /** Leaves the network, as a stopped or killed node. */
  stop(): void {
    this.online = false;
    this.#network.refresh();
  }
}
