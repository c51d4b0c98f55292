// Import direction: config <- platform <- stores <- modules <- (http | ws | background | agent) <- app <- cli <- main.
// - app/ composes the system (compose.ts) and starts the roles' surfaces (serve.ts): it sits above them.
// - The surfaces (http, ws, background, agent) never import each other: each names the ports it uses (CloudDeps,
//   GatewayDeps, WorkersDeps, …) and app/ hands them the services.
// - The surfaces reach the stores only through modules, with the exceptions listed in `storeExceptions`.
const layers = ['config', 'platform', 'stores', 'modules', 'surfaces', 'app', 'cli', 'main'];
const surfaceNames = ['http', 'ws', 'background', 'agent'];
const surfaces = `(${surfaceNames.join('|')})`;
const path = (layer) => (layer === 'surfaces' ? `^src/${surfaces}/` : `^src/${layer}/`);

/** Each remaining import of stores/ by a surface, and why it stays. */
const storeExceptions = [
  // The one HTTP error handler's last resort (classifyStoreError): every PostgreSQL query is translated at its
  // pool, but Redis, RabbitMQ and MongoDB calls have no single client-level hook (ioredis auto-pipelining,
  // amqplib channels, mongodb cursors and GridFS streams each fail on their own path), so an outage that
  // escaped a repository's translation is still classified (503 + Retry-After) rather than shown.
  '^src/http/store-errors\\.ts$',
  // The task runner's single-runner election is a PostgreSQL advisory lock held on its own connection.
  '^src/background/task-runner\\.ts$',
];

const forbidden = [];
layers.forEach((from, i) => {
  layers.slice(i + 1).forEach((to) => {
    forbidden.push({
      name: `${from}-not-to-${to}`,
      comment: `${from} must not import ${to}: imports flow ${layers.join(' <- ')}`,
      severity: 'error',
      from: { path: path(from) },
      to: { path: path(to) },
    });
  });
});
for (const s of surfaceNames)
  forbidden.push({
    name: `${s}-not-to-other-surfaces`,
    comment: `${s} must not import another surface (${surfaceNames.filter((x) => x !== s).join(', ')}): app/ wires them`,
    severity: 'error',
    from: { path: `^src/${s}/` },
    to: { path: `^src/${surfaces}/`, pathNot: `^src/${s}/` },
  });
forbidden.push(
  {
    name: 'surfaces-not-to-stores',
    comment:
      'Surfaces use the stores through modules (exceptions named with their reason in storeExceptions)',
    severity: 'error',
    from: { path: `^src/${surfaces}/`, pathNot: storeExceptions },
    to: { path: '^src/stores/' },
  },
  {
    name: 'module-public-face',
    comment: 'Another module is reached only through its index.ts',
    severity: 'error',
    from: { path: '^src/modules/([^/]+)/' },
    to: { path: '^src/modules/([^/]+)/(?!index\\.ts$)', pathNot: '^src/modules/$1/' },
  },
  { name: 'no-circular', severity: 'error', from: {}, to: { circular: true } },
  {
    name: 'src-not-to-tests-or-scripts',
    severity: 'error',
    from: { path: '^src/', pathNot: '\\.test\\.ts$' },
    to: { path: '^(test|bench|scripts)/' },
  },
);
module.exports = {
  forbidden,
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    exclude: { path: '\\.test\\.ts$' },
  },
};
