// Import direction: config <- platform <- stores <- modules <- (http | ws | background | cli) <- main.
const layers = ['config', 'platform', 'stores', 'modules', 'surfaces', 'main'];
const surfaces = '(http|ws|background|app|cli|agent)';
const path = (layer) => (layer === 'surfaces' ? `^src/${surfaces}/` : `^src/${layer}/`);
const forbidden = [];
layers.forEach((from, i) => {
  layers.slice(i + 1).forEach((to) => {
    forbidden.push({
      name: `${from}-not-to-${to}`,
      comment: `${from} must not import ${to}: imports flow config <- platform <- stores <- modules <- surfaces <- main`,
      severity: 'error',
      from: { path: path(from) },
      to: { path: path(to) },
    });
  });
});
forbidden.push(
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
