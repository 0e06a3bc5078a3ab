/**
 * Random ids, keys and secrets as hex, for the worker (row and device ids) and the server (project
 * secrets, the admin key). Cryptographically random; the bytes come from a pool, because one
 * getRandomValues call per id cost ten times the rest of making it.
 */
const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));
const randomPool = new Uint8Array(4096);
let randomOffset = randomPool.length;

/** `bytes` random bytes as hex digits. */
export function randomHex(bytes: number): string {
  // Refilled once per 4 KiB; no byte is handed out twice.
  if (randomOffset + bytes > randomPool.length) {
    crypto.getRandomValues(randomPool);
    randomOffset = 0;
  }
  let hex = '';
  for (let i = randomOffset; i < randomOffset + bytes; i++) hex += HEX[randomPool[i] as number];
  randomOffset += bytes;
  return hex;
}
