/**
 * A network namespace joined to the host by a veth pair, for partition tests: a node started
 * inside it (spawnNode's `netns`) is reachable at `nsIp`, the host side at `hostIp`; `cut()`
 * takes the namespace's end of the link down (nothing passes either way) and `heal()` brings
 * it back, with the default route through the host that other namespaces are reached by.
 * Needs root and iproute2; `netnsAvailable()` says whether this machine has both.
 *
 * @module
 */

async function ip(args: string[]): Promise<void> {
  const out = await new Deno.Command("ip", { args, stdout: "null", stderr: "piped" }).output();
  if (out.code !== 0) {
    throw new Error(`ip ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
}

/** True when network namespaces can be created here (root and iproute2). */
export async function netnsAvailable(): Promise<boolean> {
  if (Deno.build.os !== "linux" || Deno.uid() !== 0) return false;
  const probe = `shprobe${crypto.getRandomValues(new Uint32Array(1))[0] % 100000}`;
  try {
    await ip(["netns", "add", probe]);
    await ip(["netns", "del", probe]);
    return true;
  } catch {
    return false;
  }
}

export interface NetnsLink {
  ns: string;
  hostIp: string;
  nsIp: string;
  cut(): Promise<void>;
  heal(): Promise<void>;
  /**
   * Silently drops, inside the namespace, every packet to `ip` (a blackhole route): traffic
   * with that one address vanishes as on a broken path, no error, no reset, while the rest of
   * the link works. `unblackhole` removes the route.
   */
  blackhole(ip: string): Promise<void>;
  unblackhole(ip: string): Promise<void>;
  destroy(): Promise<void>;
}

// Links made by one process never share a subnet; the random start keeps test files apart.
let nextSubnet = crypto.getRandomValues(new Uint8Array(1))[0];

/**
 * Creates the namespace and its link; call destroy() in a finally. The namespace's default
 * route goes through the host, so with {@link enableIpForwarding} two namespaces reach each
 * other through it.
 */
export async function createNetnsLink(): Promise<NetnsLink> {
  const id = Array.from(
    crypto.getRandomValues(new Uint8Array(3)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  const ns = `shr${id}`;
  const hostEnd = `shr${id}a`;
  const nsEnd = `shr${id}b`;
  const subnet = `10.213.${nextSubnet++ % 256}`;
  const hostIp = `${subnet}.1`;
  const nsIp = `${subnet}.2`;
  const destroy = async () => {
    await ip(["netns", "del", ns]).catch(() => {});
    await ip(["link", "del", hostEnd]).catch(() => {});
  };
  try {
    await ip(["netns", "add", ns]);
    await ip(["link", "add", hostEnd, "type", "veth", "peer", "name", nsEnd]);
    await ip(["link", "set", nsEnd, "netns", ns]);
    await ip(["addr", "add", `${hostIp}/24`, "dev", hostEnd]);
    await ip(["link", "set", hostEnd, "up"]);
    await ip(["netns", "exec", ns, "ip", "addr", "add", `${nsIp}/24`, "dev", nsEnd]);
    await ip(["netns", "exec", ns, "ip", "link", "set", nsEnd, "up"]);
    await ip(["netns", "exec", ns, "ip", "link", "set", "lo", "up"]);
    await ip(["netns", "exec", ns, "ip", "route", "add", "default", "via", hostIp]);
  } catch (error) {
    await destroy();
    throw error;
  }
  return {
    ns,
    hostIp,
    nsIp,
    cut: () => ip(["netns", "exec", ns, "ip", "link", "set", nsEnd, "down"]),
    heal: async () => {
      await ip(["netns", "exec", ns, "ip", "link", "set", nsEnd, "up"]);
      // The kernel dropped the default route with the link; other namespaces need it back.
      await ip(["netns", "exec", ns, "ip", "route", "replace", "default", "via", hostIp]);
    },
    blackhole: (to) => ip(["netns", "exec", ns, "ip", "route", "add", "blackhole", `${to}/32`]),
    unblackhole: (to) => ip(["netns", "exec", ns, "ip", "route", "del", "blackhole", `${to}/32`]),
    destroy,
  };
}

const IP_FORWARD = "/proc/sys/net/ipv4/ip_forward";
/** One file per holder of forwarding, across processes, and the setting found before the first. */
const FORWARD_HOLDS = `${Deno.env.get("TMPDIR") ?? "/tmp"}/shanghai-test-ip-forward`;

/**
 * Lets the host route between namespaces (net.ipv4.ip_forward = 1); resolves to a function
 * that gives the hold back. Test files run in parallel processes, so holds are files: the first
 * holder records the setting found, and the last one to give its hold back restores it (a
 * holder that was killed leaves forwarding on, never off under another).
 */
export async function enableIpForwarding(): Promise<() => Promise<void>> {
  await Deno.mkdir(FORWARD_HOLDS, { recursive: true });
  const hold = `${FORWARD_HOLDS}/hold-${Deno.pid}-${crypto.randomUUID()}`;
  await Deno.writeTextFile(hold, "");
  const before = `${FORWARD_HOLDS}/before`;
  try {
    const file = await Deno.open(before, { write: true, createNew: true });
    await file.write(new TextEncoder().encode((await Deno.readTextFile(IP_FORWARD)).trim()));
    file.close();
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
  }
  await Deno.writeTextFile(IP_FORWARD, "1");
  return async () => {
    await Deno.remove(hold);
    for await (const entry of Deno.readDir(FORWARD_HOLDS)) {
      if (entry.name.startsWith("hold-")) return;
    }
    const setting = await Deno.readTextFile(before).catch(() => undefined);
    await Deno.remove(before).catch(() => {});
    if (setting !== undefined) await Deno.writeTextFile(IP_FORWARD, setting);
  };
}

/** An HTTP request made from inside the namespace (the test process cannot reach it when cut). */
export async function fetchInNetns(
  ns: string,
  url: string,
  init: { method: string; body?: string; contentType?: string },
): Promise<{ status: number; body: string }> {
  const script = `const r = await fetch(Deno.env.get("URL"), { method: Deno.env.get("METHOD"), ` +
    `headers: { "content-type": Deno.env.get("TYPE") }, body: Deno.env.get("BODY") || undefined }); ` +
    `console.log(JSON.stringify({ status: r.status, body: await r.text() }));`;
  const out = await new Deno.Command("ip", {
    args: ["netns", "exec", ns, Deno.execPath(), "eval", "--quiet", script],
    env: {
      URL: url,
      METHOD: init.method,
      BODY: init.body ?? "",
      TYPE: init.contentType ?? "application/json",
      NO_COLOR: "1",
    },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (out.code !== 0) {
    throw new Error(`fetch in ${ns} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return JSON.parse(new TextDecoder().decode(out.stdout));
}
