// Public face of the nodes module: presence, matchmaking and leases, flags, Subclouds, live catalogs.
export { createNodesModule, type NodesModule } from './nodes.module.js';
export { LiveStore, type Lease, type HeartbeatReply, type SweepResult } from './live.store.js';
export {
  PresenceService,
  type LiveEvent,
  type NodeView,
  type SweepTotals,
  type IngestReply,
} from './presence.service.js';
export { MatchmakingService, type CooldownPolicy } from './matchmaking.service.js';
export { NodeAdminService } from './node-admin.service.js';
export { LiveCatalogService, type ModelAvailability, type NetworkStatus } from './live-catalog.service.js';
export type { FlagRecord, Subcloud, RegisteredNode } from './nodes.repository.js';
export { ReputationService, type ReputationView } from './reputation.service.js';
export {
  observationOf,
  PRIOR_SCORE,
  PROBATION_JOBS,
  REPUTATION_HALF_LIFE_MS,
  type Observation,
} from './reputation.js';
export {
  heartbeatSchema,
  nodeFlags,
  type Heartbeat,
  type JobRequirements,
  type NodeFlag,
} from './node-status.js';
export { GATEWAY_OWNER_TTL_MS, RedisGatewayDirectory, type GatewayDirectory } from './gateways.repository.js';
