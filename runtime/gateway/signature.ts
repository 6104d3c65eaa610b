import { createPrivateKey, createPublicKey, sign as edSign, verify as edVerify, type KeyObject } from 'node:crypto';
import type { Secret } from '../config/secret.ts';

// PKCS#8 DER header for a raw 32-byte Ed25519 seed (docs/protocol.md §11.2).
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/** Ed25519 keys derived from a bot secret; both sides of a webhook derive the same pair. */
export interface WebhookKeys {
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** raw 32-byte public key, hex */
  publicKeyHex: string;
}

/** The secret repeated until ≥ 32 bytes, then cut to 32: the platform's seed rule. */
export function deriveSeed(secret: string): Buffer {
  const bytes = Buffer.from(secret, 'utf8');
  if (bytes.length === 0) throw new RangeError('webhook secret is empty');
  let seed = bytes;
  while (seed.length < 32) seed = Buffer.concat([seed, bytes]);
  return seed.subarray(0, 32);
}

export function deriveKeys(secret: Secret | string): WebhookKeys {
  const seed = deriveSeed(typeof secret === 'string' ? secret : secret.reveal());
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: 'der', type: 'pkcs8' });
  const publicKey = createPublicKey(privateKey);
  const jwk = publicKey.export({ format: 'jwk' });
  const publicKeyHex = Buffer.from(String(jwk.x), 'base64url').toString('hex');
  return { privateKey, publicKey, publicKeyHex };
}

/** Hex Ed25519 signature of `message`. */
export function signMessage(keys: WebhookKeys, message: Buffer | string): string {
  return edSign(null, typeof message === 'string' ? Buffer.from(message, 'utf8') : message, keys.privateKey).toString('hex');
}

/**
 * Checks a hex signature over `message`. Malformed signatures (not 64 bytes, or with the top three
 * bits of the last byte set, which no canonical Ed25519 signature has) are rejected before crypto.
 */
export function verifyMessage(keys: WebhookKeys, message: Buffer, signatureHex: string): boolean {
  if (!isSignatureShaped(signatureHex)) return false;
  return edVerify(null, message, keys.publicKey, Buffer.from(signatureHex, 'hex'));
}

/** 64 bytes of hex whose last byte has its top three bits clear: checkable before the body arrives. */
export function isSignatureShaped(signatureHex: string): boolean {
  if (!/^[0-9a-fA-F]{128}$/.test(signatureHex)) return false;
  return (Number.parseInt(signatureHex.slice(126), 16) & 0xe0) === 0;
}

/** The signed message of a webhook request: timestamp bytes immediately followed by the raw body. */
export function webhookMessage(timestamp: string, rawBody: Buffer): Buffer {
  return Buffer.concat([Buffer.from(timestamp, 'utf8'), rawBody]);
}

/** Headers the platform sends with a callback (used by the simulator and tests to sign like the platform). */
export function signWebhookRequest(keys: WebhookKeys, rawBody: Buffer, timestamp: string = String(Math.floor(Date.now() / 1000))): {
  'x-signature-ed25519': string;
  'x-signature-timestamp': string;
} {
  return { 'x-signature-ed25519': signMessage(keys, webhookMessage(timestamp, rawBody)), 'x-signature-timestamp': timestamp };
}

/** Reply to an op 13 callback-URL validation: Ed25519 over `event_ts + plain_token`. */
export function validationReply(keys: WebhookKeys, plainToken: string, eventTs: string): { plain_token: string; signature: string } {
  return { plain_token: plainToken, signature: signMessage(keys, eventTs + plainToken) };
}
