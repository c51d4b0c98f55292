// Prometheus metrics (prom-client): one registry per backbone instance (tests run several in one process),
// with the figures operators page on: HTTP, job outcomes, dispatch latency, connected nodes.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class Metrics {
  readonly registry = new Registry();

  readonly httpRequests = new Counter({
    name: 'rty_http_requests_total',
    help: 'HTTP requests by route, method and status code',
    labelNames: ['route', 'method', 'status'] as const,
    registers: [this.registry],
  });

  readonly httpDuration = new Histogram({
    name: 'rty_http_request_duration_seconds',
    help: 'HTTP request duration by route',
    labelNames: ['route'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120],
    registers: [this.registry],
  });

  readonly jobsSubmitted = new Counter({
    name: 'rty_jobs_submitted_total',
    help: 'Jobs accepted (reserved and enqueued) by model and mode',
    labelNames: ['model', 'mode'] as const,
    registers: [this.registry],
  });

  readonly jobsFinished = new Counter({
    name: 'rty_jobs_finished_total',
    help: 'Jobs that reached a terminal state in this process, by status',
    labelNames: ['status'] as const,
    registers: [this.registry],
  });

  readonly jobAttemptsFailed = new Counter({
    name: 'rty_job_attempts_failed_total',
    help: 'Attempts that failed on a node (timeout, disconnect, error) and were retried or gave up',
    registers: [this.registry],
  });

  readonly dispatchLatency = new Histogram({
    name: 'rty_dispatch_latency_seconds',
    help: 'From enqueue (or retry) to delivery on the node socket',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
    registers: [this.registry],
  });

  readonly jobLatency = new Histogram({
    name: 'rty_job_latency_seconds',
    help: 'From submission to terminal state, jobs finished in this process',
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120],
    registers: [this.registry],
  });

  readonly connectedNodes = new Gauge({
    name: 'rty_gateway_connected_nodes',
    help: 'Node WebSocket sessions open on this process',
    registers: [this.registry],
  });

  readonly nodeMessagesRejected = new Counter({
    name: 'rty_node_messages_rejected_total',
    help: 'Node messages refused by the gateway, by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: 'rty_' });
  }
}
