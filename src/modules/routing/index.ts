// Public face of the routing module (jobs on RabbitMQ).
export {
  RoutingService,
  routingOptionsFromConfig,
  type ConsumerSpec,
  type RoutingHealth,
  type RoutingOptions,
} from './routing.service.js';
export type {
  ConsumerObserver,
  ExpiredHandler,
  JobConsumer,
  JobHandler,
  JobOutcome,
} from './routing.consumer.js';
export {
  ATTEMPT_CAUSES,
  type AttemptCause,
  decodeEvent,
  decodeJob,
  JOB_EVENT_VERSION,
  JOB_MESSAGE_VERSION,
  jobEventSchema,
  jobMessageSchema,
  jobPriceSchema,
  jobRequestSchema,
  MAX_PRICE_MICRO_PER_1K,
  type JobPrice,
  type JobEvent,
  type JobEventType,
  type JobMessage,
  type JobRequest,
  type RequestKind,
  REQUEST_KINDS,
} from './routing.contracts.js';
export type { QuarantinedJob, Selection } from './quarantine.js';
export type { QueueDepth } from './health.js';
export { laneKeyOf } from './routing.rules.js';
export { publicQueueName } from '../../stores/rabbitmq/topology.js';
export { createRoutingModule, type RoutingModule } from './routing.module.js';
