// Unit tests of the sidebar's data and formatting code (src/model.ts), run by Node's
// built-in test runner on the compiled module: `jlpm test` after `jlpm build:lib`.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  activeAlerts,
  cellLabel,
  chartThemeCode,
  compareSemver,
  deliveryText,
  deployedModels,
  detailRows,
  driftBadge,
  formatDuration,
  formatNumber,
  formatRelative,
  healthBadge,
  isSession,
  keyMetrics,
  lineageChains,
  linePath,
  mlflowLinks,
  parseKernelState,
  pickExperiment,
  plural,
  promoteCandidates,
  statusLevel,
  statusText,
  targetLabel,
  trafficLabel,
  trafficSegments
} from '../lib/model.js';

test('formatNumber keeps integers and gives 4 significant digits otherwise', () => {
  assert.equal(formatNumber(42), '42');
  assert.equal(formatNumber(0.95), '0.95');
  assert.equal(formatNumber(0.123456), '0.1235');
  assert.equal(formatNumber(1234.5678), '1235');
  assert.equal(formatNumber(-2.5), '-2.5');
  assert.equal(formatNumber(0), '0');
  assert.equal(formatNumber(0.00001234), '1.23e-5');
  assert.equal(formatNumber(12345678.9), '1.23e+7');
  for (const bad of [null, undefined, NaN, Infinity]) {
    assert.equal(formatNumber(bad), '—');
  }
});

test('formatDuration picks a readable unit', () => {
  assert.equal(formatDuration(0.0123), '12 ms');
  assert.equal(formatDuration(12.34), '12.3 s');
  assert.equal(formatDuration(245), '4 min 5 s');
  assert.equal(formatDuration(7380), '2 h 3 min');
  assert.equal(formatDuration(null), '—');
  assert.equal(formatDuration(-1), '—');
});

test('formatRelative says how long ago', () => {
  const now = Date.parse('2025-01-01T12:00:00.000Z');
  assert.equal(formatRelative('2025-01-01T11:59:58.000Z', now), 'just now');
  assert.equal(formatRelative('2025-01-01T11:59:18.000Z', now), '42 s ago');
  assert.equal(formatRelative('2025-01-01T11:57:00.000Z', now), '3 min ago');
  assert.equal(formatRelative('2025-01-01T07:00:00.000Z', now), '5 h ago');
  assert.equal(formatRelative('2024-12-30T12:00:00.000Z', now), '2 d ago');
  assert.equal(formatRelative(null, now), '—');
  assert.equal(formatRelative('not a date', now), '—');
});

test('keyMetrics follows the server\'s key_metrics order, then the rest by name', () => {
  const m = { zeta: 1, loss: 0.25, accuracy: 0.912345, alpha: 2, f1: 0.8 };
  // the order the server sends (runs_query.key_metrics): the sort metric or well-known first
  assert.deepEqual(keyMetrics(m, 3, ['accuracy', 'f1', 'loss', 'zeta', 'alpha']), [
    ['accuracy', '0.9123'],
    ['f1', '0.8'],
    ['loss', '0.25']
  ]);
  assert.deepEqual(keyMetrics({ b: 1, a: 2 }, 5), [
    ['a', '2'],
    ['b', '1']
  ]);
  assert.deepEqual(keyMetrics(null), []);
  // names of the order the run does not have are skipped; names it left out follow by name
  assert.deepEqual(keyMetrics({ x: 1, y: 2, Accuracy: 0.5 }, 2, ['gone', 'y']), [
    ['y', '2'],
    ['Accuracy', '0.5']
  ]);
});

test('statusLevel maps statuses to badge levels', () => {
  assert.equal(statusLevel('completed'), 'ok');
  assert.equal(statusLevel('deployed'), 'ok');
  assert.equal(statusLevel('running'), 'info');
  assert.equal(statusLevel('pending'), 'info');
  assert.equal(statusLevel('failed'), 'error');
  assert.equal(statusLevel('firing'), 'error');
  assert.equal(statusLevel('something else'), 'warn');
  assert.equal(statusLevel(undefined), 'warn');
});

test('detailRows sorts params and formats metrics', () => {
  const run = { params: { max_depth: '10', alpha: '0.1' }, metrics: { loss: 0.333333, acc: 1 } };
  assert.deepEqual(detailRows(run), {
    params: [
      ['alpha', '0.1'],
      ['max_depth', '10']
    ],
    metrics: [
      ['acc', '1'],
      ['loss', '0.3333']
    ]
  });
});

test('compareSemver orders numerically, non-semver last', () => {
  const vs = ['1.10.0', '1.2.0', 'latest', '1.9.3', '0.1.0', '2.0.0'];
  assert.deepEqual([...vs].sort(compareSemver), ['0.1.0', '1.2.0', '1.9.3', '1.10.0', '2.0.0', 'latest']);
  assert.equal(compareSemver('1.0.0', '1.0.0'), 0);
});

test('traffic segments and labels are sorted by version and skip zero shares', () => {
  const t = { '1.10.0': 10, '1.2.0': 90, '1.0.0': 0 };
  assert.deepEqual(trafficSegments(t), [
    { version: '1.2.0', percent: 90 },
    { version: '1.10.0', percent: 10 }
  ]);
  assert.equal(trafficLabel(t), '1.2.0 90% · 1.10.0 10%');
  assert.equal(trafficLabel({}), 'no traffic');
  assert.equal(trafficLabel(null), 'no traffic');
});

test('targetLabel names where a deployment runs; records from before targets ran locally', () => {
  assert.equal(targetLabel({ target: 'ray' }), 'target: ray');
  assert.equal(targetLabel({ target: 'kserve' }), 'target: kserve');
  assert.equal(targetLabel({ target: 'local' }), 'target: local');
  assert.equal(targetLabel({}), 'target: local');
  assert.equal(targetLabel(null), 'target: local');
});

test('lineageChains follows parent links from roots to leaves', () => {
  const straight = [
    { version: '1.0.0', parent: null },
    { version: '1.1.0', parent: '1.0.0' },
    { version: '1.2.0', parent: '1.1.0' }
  ];
  assert.deepEqual(lineageChains(straight), [['1.0.0', '1.1.0', '1.2.0']]);
  const branched = [
    { version: '1.0.0', parent: null },
    { version: '2.0.0', parent: '1.0.0' },
    { version: '1.1.0', parent: '1.0.0' },
    { version: '3.0.0', parent: 'gone' }
  ];
  assert.deepEqual(lineageChains(branched), [['1.0.0', '1.1.0'], ['1.0.0', '2.0.0'], ['3.0.0']]);
  assert.deepEqual(lineageChains([]), []);
});

test('promoteCandidates offers every version but the one serving alone, newest first', () => {
  assert.deepEqual(promoteCandidates({ traffic: { '1.0.0': 100 } }, ['1.0.0', '1.1.0', '1.2.0']), ['1.2.0', '1.1.0']);
  assert.deepEqual(promoteCandidates({ traffic: { '1.0.0': 50, '1.1.0': 50 } }, ['1.0.0', '1.1.0']), ['1.1.0', '1.0.0']);
  assert.deepEqual(promoteCandidates({ traffic: { '1.0.0': 100 } }, ['1.0.0']), []);
});

test('healthBadge labels every health state', () => {
  assert.deepEqual(healthBadge({ state: 'serving', message: 'serving 1.0.0 100%' }), {
    label: 'serving',
    level: 'ok',
    title: 'serving 1.0.0 100%'
  });
  assert.equal(healthBadge({ state: 'down', message: '' }).label, 'gateway stopped');
  assert.equal(healthBadge({ state: 'failed', message: 'x' }).level, 'error');
  assert.equal(healthBadge({ state: 'unreachable', message: 'x' }).level, 'error');
  assert.equal(healthBadge({ state: 'not_serving', message: 'x' }).label, 'not serving');
  assert.equal(healthBadge(undefined).label, 'unknown');
});

test('driftBadge shows the score and whether it crossed the threshold', () => {
  assert.deepEqual(driftBadge({ model_id: 'm', drift_detected: true, drift_score: 0.234567, threshold: 0.1 }), {
    label: 'drift 0.2346',
    level: 'error',
    title: 'Drift detected: score 0.2346 (threshold 0.1)'
  });
  const ok = driftBadge({ model_id: 'm', drift_detected: false, drift_score: 0.02 });
  assert.equal(ok.level, 'ok');
  assert.equal(ok.label, 'no drift 0.02');
  assert.equal(driftBadge({ model_id: 'm', drift_detected: false, drift_score: null }).label, 'no drift —');
  assert.deepEqual(
    driftBadge({ model_id: 'm', drift_detected: false, drift_score: null, status: 'no_data', reason: 'No predictions' }),
    { label: 'no data', level: 'info', title: 'No predictions' }
  );
  assert.equal(
    driftBadge({ model_id: 'm', drift_detected: true, drift_score: 0.5, threshold: 0.1, status: 'ok', n_current: 40 }).title,
    'Drift detected: score 0.5 (threshold 0.1), 40 recent predictions'
  );
});

test('activeAlerts keeps firing then pending alerts, most severe first', () => {
  const alerts = [
    { alert_id: 'a', model_id: 'm', condition: 'c', state: 'inactive', severity: 'critical' },
    { alert_id: 'b', model_id: 'm', condition: 'c', state: 'pending', severity: 'critical' },
    { alert_id: 'c', model_id: 'm', condition: 'c', state: 'firing', severity: 'warning' },
    { alert_id: 'd', model_id: 'a', condition: 'c', state: 'firing', severity: 'critical' },
    { alert_id: 'e', model_id: 'b', condition: 'c', state: 'firing' }
  ];
  assert.deepEqual(
    activeAlerts(alerts).map(a => a.alert_id),
    ['d', 'c', 'e', 'b']
  );
  assert.deepEqual(activeAlerts([]), []);
});

test('deployedModels lists each deployed model once, sorted', () => {
  assert.deepEqual(deployedModels([{ model_id: 'b' }, { model_id: 'a' }, { model_id: 'b' }]), ['a', 'b']);
});

test('pickExperiment keeps the current one, else the newest user experiment', () => {
  const exps = [
    { name: 'model-registry', kind: 'registry' },
    { name: 'churn', kind: 'experiment' },
    { name: 'baseline', kind: 'experiment' }
  ];
  assert.equal(pickExperiment(exps, null), 'churn');
  assert.equal(pickExperiment(exps, 'baseline'), 'baseline');
  assert.equal(pickExperiment(exps, 'gone'), 'churn');
  assert.equal(pickExperiment([{ name: 'model-registry', kind: 'registry' }], null), 'model-registry');
  assert.equal(pickExperiment([], 'x'), null);
});

test('plural counts things', () => {
  assert.equal(plural(1, 'run'), '1 run');
  assert.equal(plural(0, 'run'), '0 runs');
  assert.equal(plural(3, 'version'), '3 versions');
});

test('a session run is shown as the session; cell runs name their cell', () => {
  assert.equal(isSession({ tags: { 'mlops.kind': 'session' } }), true);
  assert.equal(isSession({ tags: { 'mlops.kind': 'cell' } }), false);
  assert.equal(cellLabel({ tags: { 'mlops.execution_count': '6' } }), 'cell [6]');
  assert.equal(cellLabel({ tags: {} }), null);
});

test('mlflowLinks point at the MLflow UI pages, or nowhere without a UI', () => {
  assert.equal(mlflowLinks.run('http://127.0.0.1:5000/', '3', 'abc'), 'http://127.0.0.1:5000/#/experiments/3/runs/abc');
  assert.equal(mlflowLinks.experiment('http://h', '3'), 'http://h/#/experiments/3');
  assert.equal(mlflowLinks.model('http://h', 'acme', 'iris'), 'http://h/#/models/acme.iris');
  assert.equal(mlflowLinks.run(null, '3', 'abc'), null);
});

test('linePath zooms the y axis to the data and needs two points', () => {
  const geo = linePath([{ step: 0, value: 0.944 }, { step: 1, value: 0.972 }, { step: 2, value: null }], 100, 50, 0);
  assert.equal(geo.d, 'M0.0,50.0 L100.0,0.0');
  assert.deepEqual([geo.min, geo.max, geo.first, geo.last], [0.944, 0.972, 0, 1]);
  assert.equal(linePath([{ step: 0, value: 1 }], 100, 50), null);
});

test('parseKernelState reads the JSON the kernel reports (as a Python repr or as JSON)', () => {
  const json = '{"tenant": "acme", "autolog": "on", "mlflow_ui": null}';
  assert.deepEqual(parseKernelState(`'${json}'`), { tenant: 'acme', autolog: 'on', mlflow_ui: null });
  assert.deepEqual(parseKernelState(json), { tenant: 'acme', autolog: 'on', mlflow_ui: null });
  assert.deepEqual(parseKernelState('{"tenant": null}'), { tenant: null, autolog: 'off', mlflow_ui: null });
  assert.equal(parseKernelState('NameError'), null);
});

test('chartThemeCode sets the theme for kernels to come and redraws loaded panels, importing nothing', () => {
  const dark = chartThemeCode(false);
  assert.match(dark, /os\.environ\.__setitem__\('MLOPS_CHART_THEME', 'dark'\)/);
  assert.match(
    dark,
    /sys\.modules\['mlops_jupyter\.notebook\.widgets\.theme'\]\.set_theme\('dark'\) if 'mlops_jupyter\.notebook\.widgets\.theme' in sys\.modules/
  );
  assert.doesNotMatch(dark, /__import__\('mlops|\n/); // imports no mlops module; one expression
  assert.match(chartThemeCode(true), /set_theme\('light'\)/);
});

test('statusText says autolog and the gateway state', () => {
  assert.equal(statusText('on', { running: true, deployments: 2 }), 'MLOps: autolog on · gateway running (2)');
  assert.equal(statusText('off', { running: false }), 'MLOps: autolog off · gateway stopped');
  assert.equal(statusText(null, null), 'MLOps: autolog — · gateway —');
});

test('deliveryText shows the server\'s delivery line (the one the DriftPanel shows)', () => {
  const base = { alert_id: 'a', model_id: 'm', condition: 'error_rate > 0.1', state: 'firing' };
  assert.equal(deliveryText(base), ''); // no action delivery recorded
  const line = 'rolled back m production to 1.0.0 (1 attempt)';
  assert.equal(deliveryText({ ...base, delivery: 'delivered', delivery_text: line }), line);
  assert.equal(deliveryText({ ...base, delivery_text: 42 }), '');
});
