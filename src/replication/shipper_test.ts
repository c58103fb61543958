import assert from "node:assert/strict";
import { FakeClock } from "../common/clock.ts";
import { MemoryReplicaLog } from "../../tests/support/memory_replica_log.ts";
import { NullTransport } from "./null_transport.ts";
import { AckTimeoutError } from "../common/errors.ts";
import { Shipper } from "./shipper.ts";

Deno.test("Shipper.copiesNeeded() follows the member list the provider hands back", () => {
  const clock = new FakeClock();
  let list = ["n1", "n2", "n3"];
  const shipper = new Shipper({
    log: new MemoryReplicaLog("n1", clock),
    transport: new NullTransport("n1"),
    clock,
    members: () => list,
  });
  assert.equal(shipper.copiesNeeded("quorum"), 2);
  assert.equal(shipper.copiesNeeded("all"), 3);
  // The provider's contract: the same array means the same members (the count is kept); a
  // membership change comes as a new array, counted anew.
  list.push("ignored-until-a-new-array");
  assert.equal(shipper.copiesNeeded("all"), 3);
  list = ["n1", "n2", "n3", "n4", "n5"];
  assert.equal(shipper.copiesNeeded("quorum"), 3);
  assert.equal(shipper.copiesNeeded("all"), 5);
  assert.deepEqual(shipper.members(), ["n1", "n2", "n3", "n4", "n5"]);
  // This node counts even when the provider leaves it out, and only once.
  list = ["n2", "n2", "n3"];
  assert.equal(shipper.copiesNeeded("all"), 3);
  assert.deepEqual(shipper.members().sort(), ["n1", "n2", "n3"]);
});

Deno.test("a stopped Shipper answers a late quorum write or read at once instead of holding it forever", async () => {
  // A write whose fsync lands after replication stopped still asks for its ack, and with no
  // tick left to expire it, it once waited forever (and held the node's HTTP shutdown, when a
  // stop stopped replication first). It now gets the 504 at once, with the copies known.
  const clock = new FakeClock();
  const log = new MemoryReplicaLog("n1", clock);
  const shipper = new Shipper({
    log,
    transport: new NullTransport("n1"),
    clock,
    members: () => ["n1", "n2", "n3"],
  });
  shipper.stop();
  const { seq } = await log.write("k", new TextEncoder().encode("v"));
  const token = () => "token";
  await assert.rejects(
    shipper.waitForAck(seq, "quorum", 60_000, token),
    (error: unknown) =>
      error instanceof AckTimeoutError && error.copies === 1 && error.copiesNeeded === 2,
  );
  assert.equal(await shipper.waitForAck(seq, "one", 60_000, token), 1);
  await assert.rejects(shipper.readQuorum("k", 60_000), /1 of 3 members answered, 2 needed/);
});
