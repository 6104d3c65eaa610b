import type { GatewaySnapshot } from './gateway.ts';
import type { LedgerSnapshot } from './message-ledger.ts';
import type { OutboxSnapshot } from './outbox.ts';
import type { ProactiveSnapshot } from './proactive-quota.ts';
import type { IssuedToken } from './token-issuer.ts';
import type { WebhookRegistration } from './webhook-delivery.ts';
import type { WorldSnapshot } from './world.ts';

/**
 * Everything a restarted simulator needs so that clients carry on as after a platform restart:
 * access tokens stay valid, sessions stay resumable (with their replay buffers and seq), reply
 * windows, msg_seq dedupe and proactive quotas continue, the outbox keeps counting, the world
 * keeps the guilds, channels, groups and users edited into it. Plain JSON: it may be written to a
 * file and read by another process.
 *
 * ```ts
 * const state = sim.exportState();
 * await sim.close();
 * sim = await startSimulator({ port: oldPort, state });
 * ```
 */
export interface SimulatorState {
  version: 1;
  tokens: IssuedToken[];
  gateway: GatewaySnapshot;
  ledger: LedgerSnapshot;
  outbox: OutboxSnapshot;
  webhooks: WebhookRegistration[];
  /** absent in states exported before it was kept: the world is then seeded afresh */
  world?: WorldSnapshot;
  proactive?: ProactiveSnapshot;
  /** event ids already used, so ids stay unique across the restart */
  nextEventId: number;
}
