// EIP-191 personal-message signatures (sign, recover the signer's address) on libsecp256k1 through the
// `secp256k1` package's N-API prebuild, with viem's pure-JS path only where the native module cannot load.
import { createRequire } from 'node:module';
import { bytesToHex, keccak256, recoverMessageAddress } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { normalizeAddress } from '../../config/vocabulary.js';

/** The subset of the `secp256k1` package's API used here (Uint8Array in, Uint8Array out; throws on bad input). */
interface NativeSecp256k1 {
  ecdsaRecover(sig: Uint8Array, recid: number, msg32: Uint8Array, compressed: boolean): Uint8Array;
  ecdsaSign(msg32: Uint8Array, seckey: Uint8Array): { signature: Uint8Array; recid: number };
  publicKeyCreate(seckey: Uint8Array, compressed: boolean): Uint8Array;
}

export type Eip191Backend = 'native' | 'js';

/** Sign and recover over EIP-191 ("\x19Ethereum Signed Message:\n" + byte length + text, keccak-256). */
export interface Eip191 {
  readonly backend: Eip191Backend;
  /** The lower-case 0x address of a 32-byte private key. */
  address(privateKey: `0x${string}`): string;
  /** A 65-byte r‖s‖v signature (v = 27/28), byte-identical to viem's signMessage (RFC 6979 nonces). */
  sign(privateKey: `0x${string}`, text: string): Promise<`0x${string}`>;
  /** The lower-case signer address; throws on a malformed or unrecoverable signature. */
  recover(text: string, signature: string): Promise<string>;
}

const SIGNATURE = /^0x[0-9a-fA-F]{130}$/;
const PRIVATE_KEY = /^0x[0-9a-fA-F]{64}$/;

function digest(text: string): Uint8Array {
  const body = Buffer.from(text, 'utf8');
  return keccak256(
    Buffer.concat([Buffer.from(`\x19Ethereum Signed Message:\n${body.length}`), body]),
    'bytes',
  );
}

/** v as viem reads it: 0/1 or 27/28; anything else is not a signature. */
function recoveryId(v: number): 0 | 1 {
  if (v === 0 || v === 27) return 0;
  if (v === 1 || v === 28) return 1;
  throw new Error(`signature recovery byte ${v} is not 0, 1, 27 or 28`);
}

function keyBytes(privateKey: string): Buffer {
  if (!PRIVATE_KEY.test(privateKey)) throw new Error('a private key is 32 bytes of 0x-prefixed hex');
  return Buffer.from(privateKey.slice(2), 'hex');
}

function addressOfPublicKey(uncompressed: Uint8Array): string {
  return bytesToHex(keccak256(uncompressed.subarray(1), 'bytes').subarray(12));
}

export function nativeEip191(lib: NativeSecp256k1): Eip191 {
  return {
    backend: 'native',
    address: (privateKey) => addressOfPublicKey(lib.publicKeyCreate(keyBytes(privateKey), false)),
    sign: (privateKey, text) => {
      const { signature, recid } = lib.ecdsaSign(digest(text), keyBytes(privateKey));
      return Promise.resolve(
        `0x${Buffer.from(signature).toString('hex')}${(27 + recid).toString(16)}` as `0x${string}`,
      );
    },
    recover: (text, signature) => {
      // Synchronous (~60 µs); wrapped in a promise only to share the interface with the JS path.
      if (!SIGNATURE.test(signature)) return Promise.reject(new Error('a signature is 65 bytes of 0x hex'));
      try {
        const sig = Buffer.from(signature.slice(2), 'hex');
        const pub = lib.ecdsaRecover(sig.subarray(0, 64), recoveryId(sig[64]!), digest(text), false);
        return Promise.resolve(addressOfPublicKey(pub));
      } catch (err) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
    },
  };
}

/** viem / @noble/curves: ~2 ms per recover on this machine kind; the fallback only. */
export const jsEip191: Eip191 = {
  backend: 'js',
  address: (privateKey) => normalizeAddress(privateKeyToAccount(privateKey).address),
  sign: (privateKey, text) => privateKeyToAccount(privateKey).signMessage({ message: text }),
  recover: async (text, signature) => {
    if (!SIGNATURE.test(signature)) throw new Error('a signature is 65 bytes of 0x hex');
    return normalizeAddress(
      await recoverMessageAddress({ message: text, signature: signature as `0x${string}` }),
    );
  },
};

/** Loads the N-API binding itself (not the package's index, which silently falls back to elliptic). */
function loadNative(): { native: NativeSecp256k1 } | { error: string } {
  try {
    const require = createRequire(import.meta.url);
    return { native: require('secp256k1/bindings.js') as NativeSecp256k1 };
  } catch (err) {
    return { error: err instanceof Error ? err.message : String(err) };
  }
}

const loaded = loadNative();

/** The implementation this process uses: native when its prebuild loads, else the JS fallback. */
export const eip191: Eip191 = 'native' in loaded ? nativeEip191(loaded.native) : jsEip191;

/** Why the native module did not load (undefined when it did). */
export const eip191LoadError: string | undefined = 'error' in loaded ? loaded.error : undefined;

let reported = false;

/** Logs once per process which implementation runs (and why the native one did not load). */
export function reportEip191Backend(log: {
  info(o: object, msg: string): void;
  warn(o: object, msg: string): void;
}): void {
  if (reported) return;
  reported = true;
  if (eip191.backend === 'native') log.info({ secp256k1: 'native' }, 'node signatures: libsecp256k1 (N-API)');
  else
    log.warn(
      { secp256k1: 'js', loadError: eip191LoadError },
      'node signatures: pure-JS fallback (the libsecp256k1 prebuild did not load; ~30x more CPU per message)',
    );
}
