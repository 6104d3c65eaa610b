import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';

/** PKCS#8 DER header for a raw 32-byte Ed25519 seed (§11.2). */
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/** The Ed25519 seed: the secret repeated until it has ≥ 32 bytes, then cut to 32 (§11.2). */
export function seedFromSecret(secret: string): Buffer {
  const bytes = Buffer.from(secret, 'utf8');
  if (bytes.length === 0) throw new TypeError('webhook signing needs a non-empty secret');
  let seed = bytes;
  while (seed.length < 32) seed = Buffer.concat([seed, bytes]);
  return seed.subarray(0, 32);
}

/** The key pair the platform and a bot both derive from the bot's secret. */
export class WebhookSigner {
  readonly #privateKey: KeyObject;
  readonly publicKey: KeyObject;

  constructor(secret: string) {
    this.#privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seedFromSecret(secret)]), format: 'der', type: 'pkcs8' });
    this.publicKey = createPublicKey(this.#privateKey);
  }

  /** Raw 32-byte public key as hex. */
  publicKeyHex(): string {
    const jwk = this.publicKey.export({ format: 'jwk' });
    return Buffer.from(jwk.x ?? '', 'base64url').toString('hex');
  }

  /** Hex signature over `timestamp` followed by the raw body bytes. */
  sign(timestamp: string, body: string | Buffer): string {
    return sign(null, Buffer.concat([Buffer.from(timestamp, 'utf8'), Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8')]), this.#privateKey).toString('hex');
  }

  /** Checks a hex signature as the platform would check a bot's op-13 answer. */
  verify(timestamp: string, body: string | Buffer, signatureHex: unknown): boolean {
    if (typeof signatureHex !== 'string' || !/^[0-9a-fA-F]{128}$/.test(signatureHex)) return false;
    const sig = Buffer.from(signatureHex, 'hex');
    if ((sig[63]! & 0xe0) !== 0) return false;
    return verify(null, Buffer.concat([Buffer.from(timestamp, 'utf8'), Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8')]), this.publicKey, sig);
  }
}
