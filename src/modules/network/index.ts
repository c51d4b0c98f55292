// Public face of the network module: canonical encoding and signed node messages.
export { canonicalJson } from './canonical-json.js';
export {
  NODE_MESSAGE_VERSION,
  signedNodeMessageSchema,
  signingText,
  verifyNodeMessage,
  type NonceStore,
  type SignedNodeMessage,
  type UnsignedNodeMessage,
} from './node-message.js';
export {
  NetworkConfigService,
  configDigest,
  configSigningText,
  verifyNetworkConfig,
  type NetworkConfigVersion,
} from './network-config.service.js';
export { RedisNonceStore, SessionNonceWindow } from './nonce-store.js';
export {
  eip191,
  eip191LoadError,
  jsEip191,
  reportEip191Backend,
  type Eip191,
  type Eip191Backend,
} from './eip191.js';
export { PriceBook } from './price-book.js';
export {
  checkPriceSection,
  priceOf,
  priceTableOf,
  type Prices,
  type PriceTable,
  type QuotedPrice,
} from './price-table.js';
export { NetworkStatusService, type NetworkStatusSummary } from './network-status.service.js';
export * from './node-protocol.js';
export {
  authenticateNodeMessage,
  NodeKey,
  rejectReasonOf,
  signNodeMessage,
  type NodeAuthDeps,
} from './node-auth.js';
export { createNetworkModule, createNetworkStatus, type NetworkModule } from './network.module.js';
