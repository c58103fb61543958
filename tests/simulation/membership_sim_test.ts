/**
 * Seeded simulations of membership: many clusters per run, each replayable with
 * `SEED=<n> deno task test:sim`.
 */
import assert from "node:assert/strict";
import { Random } from "../../src/common/random.ts";
import type { DetectorKind } from "../../src/cluster/failure_detector.ts";
import { DEFAULT_TIMINGS, forEachSeed, SimCluster } from "../support/sim_cluster.ts";

const LOSSY = { dropRate: 0.1, duplicateRate: 0.05, delayMinMs: 1, delayMaxMs: 200 };

function formCluster(
  seed: number,
  size: number,
  detector: DetectorKind = "swim",
  net = LOSSY,
): SimCluster {
  const sim = new SimCluster({ seed, detector, ...net });
  sim.start("n0");
  // Everyone joins through one seed, at staggered times.
  for (let i = 1; i < size; i++) {
    sim.run(sim.tickMs * (1 + sim.network.random.int(5)));
    sim.start(`n${i}`, ["n0"]);
  }
  return sim;
}

for (const detector of ["swim", "phi"] as const) {
  Deno.test(`simulation (${detector}): every live member is seen up by all after joining through one seed`, () => {
    forEachSeed(120, (seed) => {
      const sim = formCluster(seed, 3 + (seed % 5), detector);
      const ok = sim.runUntil(() => sim.allUp(), 3 * DEFAULT_TIMINGS.heartbeatIntervalMs);
      assert.ok(
        ok,
        `not converged: ${
          JSON.stringify(
            sim.liveIds().map((a) => [
              a,
              sim.nodes.get(a)!.membership.members().map((m) => `${m.id}:${m.state}`),
            ]),
          )
        }`,
      );
    });
  });

  Deno.test(`simulation (${detector}): a crashed member is seen down by every live member within the down bound`, () => {
    forEachSeed(80, (seed) => {
      const sim = formCluster(seed, 3 + (seed % 5), detector);
      assert.ok(sim.runUntil(() => sim.allUp(), 30_000), "not converged before the crash");
      const victim = sim.network.random.pick(sim.liveIds());
      const crashedMs = sim.nowMs;
      sim.crash(victim);
      const others = sim.liveIds();
      // Bound: down-after from the last time it was heard (at or before the crash), plus a tick.
      const boundMs = DEFAULT_TIMINGS.downAfterMs + sim.tickMs;
      sim.run(boundMs);
      for (const id of others) {
        assert.equal(
          sim.view(id, victim),
          "down",
          `${id} sees ${victim} as ${sim.view(id, victim)} ${
            sim.nowMs - crashedMs
          } ms after the crash`,
        );
        const suspected = sim.events.find((e) =>
          e.observer === id && e.nodeId === victim && e.kind === "suspect" && e.atMs >= crashedMs
        );
        assert.ok(suspected, `${id} never marked ${victim} suspect first`);
      }
    });
  });

  Deno.test(`simulation (${detector}): no live member is ever declared down at 10% message loss with default timings`, () => {
    forEachSeed(40, (seed) => {
      const sim = formCluster(seed, 5, detector);
      assert.ok(sim.runUntil(() => sim.allUp(), 30_000), "not converged");
      const fromMs = sim.nowMs;
      sim.run(10 * 60_000);
      const falseDown = sim.events.find((e) => e.atMs >= fromMs && e.kind === "down");
      assert.equal(falseDown, undefined, `false down: ${JSON.stringify(falseDown)}`);
      assert.ok(sim.allUp());
    });
  });
}

Deno.test("simulation: a partitioned member is suspected, and after healing refutes and is up everywhere", () => {
  forEachSeed(80, (seed) => {
    const sim = formCluster(seed, 3 + (seed % 4));
    assert.ok(sim.runUntil(() => sim.allUp(), 30_000), "not converged");
    const victim = sim.network.random.pick(sim.liveIds());
    const others = sim.liveIds().filter((id) => id !== victim);
    const before = sim.nodes.get(victim)!.membership.incarnation;
    sim.network.partition([[victim], others]);
    const partitionedMs = sim.nowMs;
    // Hold the partition past the down bound, sometimes only past the suspect bound.
    const holdMs = seed % 2 === 0
      ? DEFAULT_TIMINGS.downAfterMs + 5000
      : DEFAULT_TIMINGS.suspectAfterMs + 2000;
    sim.run(holdMs);
    for (const id of others) {
      assert.ok(
        sim.events.some((e) =>
          e.observer === id && e.nodeId === victim && e.kind === "suspect" &&
          e.atMs >= partitionedMs
        ),
        `${id} never suspected ${victim}`,
      );
    }
    sim.network.heal();
    const healed = sim.runUntil(() => sim.allUp(), 3 * DEFAULT_TIMINGS.heartbeatIntervalMs);
    assert.ok(
      healed,
      `not all up after healing: ${JSON.stringify(others.map((id) => [id, sim.view(id, victim)]))}`,
    );
    assert.ok(sim.nodes.get(victim)!.membership.incarnation > before, "the victim never refuted");
  });
});

Deno.test("simulation: membership converges after any sequence of joins, leaves, crashes and restarts", () => {
  forEachSeed(100, (seed) => {
    const sim = new SimCluster({ seed, ...LOSSY });
    const random = new Random(seed * 7919);
    sim.start("n0");
    let next = 1;
    for (let step = 0; step < 12; step++) {
      const live = sim.liveIds();
      const roll = random.int(10);
      if (roll < 5 || live.length < 2) {
        sim.start(`n${next++}`, [random.pick(live.length > 0 ? live : ["n0"])]);
      } else if (roll < 7) {
        sim.leave(random.pick(live));
      } else if (roll < 9) {
        sim.crash(random.pick(live));
      } else {
        const dead = [...sim.nodes.values()].filter((n) => !n.alive && !n.leaving);
        if (dead.length > 0) sim.start(random.pick(dead).id);
      }
      sim.run(random.int(2 * DEFAULT_TIMINGS.heartbeatIntervalMs));
    }
    // Bring crashed nodes back so that every node either left or is live, then let it settle.
    for (const n of [...sim.nodes.values()]) if (!n.alive && !n.leaving) sim.start(n.id);
    const live = sim.liveIds();
    const left = [...sim.nodes.values()].filter((n) => n.leaving).map((n) => n.id);
    const converged = () =>
      sim.allUp() &&
      live.every((a) => left.every((l) => [undefined, "left"].includes(sim.view(a, l))));
    const ok = sim.runUntil(converged, 120_000);
    assert.ok(
      ok,
      `not converged: ${
        JSON.stringify(live.map((a) => [
          a,
          sim.nodes.get(a)!.membership.members().map((m) => `${m.id}:${m.state}@${m.incarnation}`),
        ]))
      }`,
    );
  });
});
