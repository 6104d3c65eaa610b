/**
 * bot.yaml as text: read with a size cap, decoded as strict UTF-8. A lenient decode would turn a
 * stray GBK or Latin-1 byte in a secret into U+FFFD and the bot would fail later with "bad
 * credentials"; here it is an error at the byte's line and column.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

/** bot.yaml files are a few kilobytes; a larger one is a mistake (or an attack on `check`). */
export const MAX_CONFIG_BYTES = 1024 * 1024;

/** Why the bytes are not UTF-8 text, and where: `charOffset` into `text`, a lossy decode for locating it in the YAML. */
export interface EncodingProblem {
  detail: string;
  text?: string;
  charOffset?: number;
}

/** Reads at most `limit + 1` bytes: a multi-gigabyte file (or /dev/zero) is never loaded whole. */
export function readCapped(path: string, limit = MAX_CONFIG_BYTES): { bytes: Buffer; size: number } | { over: true; size: number } {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    if (size > limit) return { over: true, size };
    // the size of a pipe or /dev/… file is 0: read up to the cap and look one byte past it
    const buffer = Buffer.alloc(limit + 1);
    let length = 0;
    while (length < buffer.length) {
      const n = readSync(fd, buffer, length, buffer.length - length, null);
      if (n === 0) break;
      length += n;
    }
    return length > limit ? { over: true, size: length } : { bytes: buffer.subarray(0, length), size: length };
  } finally {
    closeSync(fd);
  }
}

/** The text of a UTF-8 file (a UTF-8 byte-order mark is dropped), or why it is not one. */
export function decodeConfigText(bytes: Buffer): { text: string } | { problem: EncodingProblem } {
  if (startsWith(bytes, [0xff, 0xfe]) || startsWith(bytes, [0xfe, 0xff])) {
    return { problem: { detail: 'the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8' } };
  }
  const body = startsWith(bytes, [0xef, 0xbb, 0xbf]) ? bytes.subarray(3) : bytes;
  const nul = body.indexOf(0);
  const bad = invalidUtf8At(body);
  const first = nul >= 0 && (bad < 0 || nul < bad) ? nul : bad;
  if (first < 0) return { text: body.toString('utf8') };
  const text = new TextDecoder('utf-8').decode(body);
  const charOffset = new TextDecoder('utf-8').decode(body.subarray(0, first)).length;
  const detail = first === nul
    ? 'a NUL byte: the file is not UTF-8 text (UTF-16 saved without a byte-order mark?); save it as UTF-8'
    : `byte 0x${body[first]!.toString(16).padStart(2, '0')} is not valid UTF-8 (was the file saved as GBK or Latin-1?); save it as UTF-8`;
  return { problem: { detail, text, charOffset } };
}

function startsWith(bytes: Buffer, prefix: number[]): boolean {
  return prefix.every((b, i) => bytes[i] === b);
}

/** Offset of the first byte that does not belong to a well-formed UTF-8 sequence (RFC 3629), or -1. */
function invalidUtf8At(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i]!;
    if (b < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let min: number;
    let max = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) [need, min] = [1, 0x80];
    else if (b === 0xe0) [need, min] = [2, 0xa0];
    else if (b === 0xed) [need, min, max] = [2, 0x80, 0x9f]; // no UTF-16 surrogates
    else if (b >= 0xe1 && b <= 0xef) [need, min] = [2, 0x80];
    else if (b === 0xf0) [need, min] = [3, 0x90];
    else if (b === 0xf4) [need, min, max] = [3, 0x80, 0x8f]; // nothing above U+10FFFF
    else if (b >= 0xf1 && b <= 0xf3) [need, min] = [3, 0x80];
    else return i;
    for (let k = 1; k <= need; k++) {
      const c = bytes[i + k];
      const [lo, hi] = k === 1 ? [min, max] : [0x80, 0xbf];
      if (c === undefined || c < lo || c > hi) return i;
    }
    i += need + 1;
  }
  return -1;
}
