import { CODES, PlatformError } from './platform-error.ts';

/** Where a message goes: the four kinds of target the platform distinguishes (§14). */
export type ReplyScene = 'c2c' | 'group' | 'guild' | 'direct';

/** A user message or event the platform pushed, which a bot may answer passively. */
export interface InboundRecord {
  id: string;
  appId: string;
  scene: ReplyScene;
  /** channel id, DM guild id, group openid or user openid; empty for events answerable anywhere in their scene */
  target: string;
  /** epoch ms (fractional: reply latencies are measured from it) */
  at: number;
  replies: number;
  kind: 'message' | 'event';
}

export interface SentRecord { id: string; appId: string; scene: ReplyScene; target: string; at: number; outboxN: number }
export interface UploadRecord { fileInfo: string; appId: string; scene: 'group' | 'c2c' }

export interface LedgerSnapshot { inbound: InboundRecord[]; sent: SentRecord[]; seqs: string[]; uploads: UploadRecord[] }

/** Epoch milliseconds with sub-millisecond precision (reply latencies are often under 1 ms). */
export function epochNow(): number {
  return performance.timeOrigin + performance.now();
}

/** Group/C2C allow five passive replies per message (§14). */
const MAX_REPLIES = 5;
/** Bounded memory for long benchmark runs: the oldest records go first. */
const MAX_RECORDS = 100_000;

/**
 * What the platform remembers about messages: inbound ids for passive-reply checks, the
 * msg_seq already used per (target, msg_id), and what bots sent (for recall).
 */
export class MessageLedger {
  readonly #inbound = new Map<string, InboundRecord>();
  readonly #sent = new Map<string, SentRecord>();
  readonly #seqs = new Set<string>();
  readonly #uploads = new Map<string, UploadRecord>();
  readonly #windows: Record<ReplyScene, number>;

  constructor(windows: Record<ReplyScene, number>, restored?: LedgerSnapshot) {
    this.#windows = windows;
    for (const r of restored?.inbound ?? []) this.#inbound.set(r.id, { ...r });
    for (const r of restored?.sent ?? []) this.#sent.set(r.id, { ...r });
    for (const s of restored?.seqs ?? []) this.#seqs.add(s);
    for (const u of restored?.uploads ?? []) this.#uploads.set(u.fileInfo, { ...u });
  }

  recordInbound(record: Omit<InboundRecord, 'replies'>): void {
    this.#inbound.set(record.id, { ...record, replies: 0 });
    trim(this.#inbound);
  }

  /**
   * Checks a send against §14 and, when it passes, counts it. Returns whether it is passive.
   * Throws the platform's error otherwise.
   */
  admit(appId: string, scene: ReplyScene, target: string, body: { msg_id?: unknown; event_id?: unknown; msg_seq?: unknown }, now = epochNow()): { passive: boolean; answeredAt?: number } {
    const refId = typeof body.msg_id === 'string' && body.msg_id ? body.msg_id : typeof body.event_id === 'string' && body.event_id ? body.event_id : undefined;
    if (body.msg_seq !== undefined && (typeof body.msg_seq !== 'number' || !Number.isInteger(body.msg_seq) || body.msg_seq < 0)) {
      throw new PlatformError(400, CODES.invalidParameter, 'msg_seq must be a non-negative integer');
    }
    if (refId === undefined) return { passive: false };
    const field = typeof body.msg_id === 'string' && body.msg_id ? 'msg_id' : 'event_id';
    const record = this.#inbound.get(refId);
    const sameScene = record && record.appId === appId && record.scene === scene && (record.target === '' || record.target === target);
    if (!record || !sameScene || (field === 'msg_id' && record.kind !== 'message')) {
      throw new PlatformError(400, CODES.replyMsgIdWrong, `${field} ${refId} is not a message this bot may reply to here`);
    }
    if (now - record.at > this.#windows[scene]) throw new PlatformError(400, CODES.replyWindowExpired, `passive reply window for ${field} ${refId} has expired`);
    if (scene === 'group' || scene === 'c2c') {
      const seqKey = `${scene}:${target}:${refId}:${typeof body.msg_seq === 'number' ? body.msg_seq : 1}`;
      if (this.#seqs.has(seqKey)) throw new PlatformError(400, CODES.duplicateMsgSeq, '消息被去重，请检查请求msgseq', { errCode: CODES.duplicateMsgSeq });
      if (record.replies >= MAX_REPLIES) throw new PlatformError(400, CODES.replyLimitReached, `at most ${MAX_REPLIES} replies per ${field}`);
      this.#seqs.add(seqKey);
      if (this.#seqs.size > MAX_RECORDS) this.#seqs.delete(this.#seqs.values().next().value as string);
    }
    record.replies++;
    return { passive: true, answeredAt: record.at };
  }

  recordSent(record: SentRecord): void {
    this.#sent.set(record.id, record);
    trim(this.#sent);
  }

  sent(id: string): SentRecord | undefined {
    return this.#sent.get(id);
  }

  forgetSent(id: string): void {
    this.#sent.delete(id);
  }

  recordUpload(record: UploadRecord): void {
    this.#uploads.set(record.fileInfo, record);
    trim(this.#uploads);
  }

  upload(fileInfo: string): UploadRecord | undefined {
    return this.#uploads.get(fileInfo);
  }

  snapshot(): LedgerSnapshot {
    return { inbound: [...this.#inbound.values()], sent: [...this.#sent.values()], seqs: [...this.#seqs], uploads: [...this.#uploads.values()] };
  }
}

function trim<V>(map: Map<string, V>): void {
  while (map.size > MAX_RECORDS) map.delete(map.keys().next().value as string);
}
