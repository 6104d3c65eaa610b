/**
 * Which shards one process should take or give up so that the live processes of a bot hold them evenly
 * (±1). Every process runs this on its own view each tick and acts only on its own shards: it acquires
 * free ones (never another live holder's) and releases its surplus only when some other process is
 * below its share, so the fleet converges without a coordinator.
 */
export interface SpreadInput {
  shardCount: number;
  /** live processes (heartbeats not expired), this one included or not */
  members: readonly string[];
  self: string;
  /** lease holder per shard; undefined = free. A holder that is not a member still blocks its shard. */
  owners: ReadonlyArray<string | undefined>;
  /** free shards that have stayed free for a while (see below) */
  longFree?: readonly number[];
}

export interface SpreadPlan {
  /** how many shards this process should hold */
  target: number;
  acquire: number[];
  release: number[];
}

export function planSpread(input: SpreadInput): SpreadPlan {
  const members = [...new Set([...input.members, input.self])].sort();
  const counts = new Map(members.map((m) => [m, 0]));
  const mine: number[] = [];
  const free: number[] = [];
  for (let shard = 0; shard < input.shardCount; shard++) {
    const owner = input.owners[shard];
    if (owner === undefined) free.push(shard);
    else if (counts.has(owner)) counts.set(owner, counts.get(owner)! + 1);
    if (owner === input.self) mine.push(shard);
  }
  const base = Math.floor(input.shardCount / members.length);
  const extra = input.shardCount % members.length;
  // the +1 shares go to those already holding the most: reaching the spread then moves the fewest shards
  const ranked = [...members].sort((a, b) => counts.get(b)! - counts.get(a)! || (a < b ? -1 : a > b ? 1 : 0));
  const targets = new Map(ranked.map((m, i) => [m, base + (i < extra ? 1 : 0)]));
  const target = targets.get(input.self)!;
  const plan: SpreadPlan = { target, acquire: [], release: [] };

  if (mine.length < target) {
    // start at a per-process offset so processes acquiring at the same moment mostly pick different shards
    const offset = free.length === 0 ? 0 : hash(input.self) % free.length;
    const rotated = [...free.slice(offset), ...free.slice(0, offset)];
    plan.acquire = rotated.slice(0, target - mine.length);
    return plan;
  }
  if (mine.length > target) {
    let wanted = 0;
    for (const m of members) if (m !== input.self) wanted += Math.max(0, targets.get(m)! - counts.get(m)!);
    wanted = Math.max(0, wanted - free.length);
    plan.release = mine.slice(mine.length - Math.min(mine.length - target, wanted));
    return plan;
  }
  // A shard left free for a while although someone is below its share: that process is not acquiring
  // (a dead one whose heartbeat outlived its leases, or a stuck one). The least loaded of the processes
  // that are acquiring (at their share) adopts one per tick; releases even the spread out again later.
  const adoptable = (input.longFree ?? []).filter((shard) => input.owners[shard] === undefined);
  if (adoptable.length > 0) {
    const adopters = members.filter((m) => counts.get(m)! >= targets.get(m)!);
    const least = adopters.sort((a, b) => counts.get(a)! - counts.get(b)! || (a < b ? -1 : a > b ? 1 : 0))[0];
    if (least === input.self) plan.acquire = [adoptable[0]!];
  }
  return plan;
}

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619) >>> 0;
  return h;
}
