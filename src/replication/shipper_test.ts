import assert from "node:assert/strict";
import { FakeClock } from "../common/clock.ts";
import { MemoryReplicaLog } from "../../tests/support/memory_replica_log.ts";
import { NullTransport } from "./null_transport.ts";
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
