import type { GatewaySnapshot } from './gateway.ts';
import type { LedgerSnapshot } from './message-ledger.ts';
import type { OutboxSnapshot } from './outbox.ts';
import type { IssuedToken } from './token-issuer.ts';
import type { WebhookRegistration } from './webhook-delivery.ts';

/**
 * Everything a restarted simulator needs so that clients carry on as after a platform restart:
 * access tokens stay valid, sessions stay resumable (with their replay buffers and seq), reply
 * windows and msg_seq dedupe continue, the outbox keeps counting. Plain JSON: it may be written
 * to a file and read by another process. The world (guilds, channels…) is re-seeded, not kept.
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
  /** event ids already used, so ids stay unique across the restart */
  nextEventId: number;
}
