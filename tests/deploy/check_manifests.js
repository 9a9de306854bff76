'use strict';
// Checks rendered kustomize output (deploy/k8s): every object against the
// Kubernetes API schemas (kubernetes-models; KEDA's from
// @kubernetes-models/keda), unknown fields refused as `kubectl apply
// --validate=strict` would, then what veil needs of its StatefulSet, Service,
// NetworkPolicy, PodDisruptionBudget, ConfigMaps and ScaledObject.
//
//   node check_manifests.js --dockerfile DOCKERFILE NAME=RENDERED.yaml...
//   node check_manifests.js --print pipeline|init-script|env RENDERED.yaml
//
// A NAME of "keda" expects the KEDA overlay (a ScaledObject, no replicas).
const fs = require('fs');
const path = require('path');
const yaml = require('js-yaml');
const { Report } = require('./report');

// ---- schemas -------------------------------------------------------------------
function modelClass(apiVersion, kind) {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  const mod = group === 'keda.sh'
    ? `@kubernetes-models/keda/keda.sh/${version}`
    : group ? `kubernetes-models/${group}/${version}` : `kubernetes-models/${version}`;
  let m;
  try {
    m = require(mod);
  } catch (e) {
    return null;
  }
  return m[kind] || null;
}

// Validates obj with the model's compiled schema through a Proxy that records
// which keys the validator reads: a key it never reads is not in the schema.
function validate(obj) {
  const Cls = modelClass(obj.apiVersion, obj.kind);
  if (!Cls)
    throw new Error(`no schema for ${obj.apiVersion} ${obj.kind}`);
  const records = [];
  const proxies = new WeakMap();
  const wrap = (o, where) => {
    if (o === null || typeof o !== 'object')
      return o;
    if (proxies.has(o))
      return proxies.get(o);
    const rec = { o, where, read: new Set() };
    records.push(rec);
    const p = new Proxy(o, {
      get(t, k, recv) {
        if (typeof k === 'string')
          rec.read.add(k);
        const v = Reflect.get(t, k, recv);
        return typeof k === 'string' ? wrap(v, `${where}/${k}`) : v;
      },
    });
    proxies.set(o, p);
    return p;
  };
  Cls.prototype.validate.call(wrap(obj, ''));
  const unknown = [];
  for (const { o, where, read } of records)
    if (!Array.isArray(o))
      for (const k of Object.keys(o))
        if (!read.has(k))
          unknown.push(`${where}/${k}`);
  if (unknown.length)
    throw new Error(`unknown field(s): ${unknown.join(', ')}`);
  return true;
}

// ---- helpers ---------------------------------------------------------------------
function load(file) {
  return yaml.loadAll(fs.readFileSync(file, 'utf8')).filter((d) => d);
}

const find = (docs, kind, name) =>
  docs.filter((d) => d.kind === kind && (!name || d.metadata.name === name));

// Kubernetes quantities, enough for cpu and memory.
function quantity(q) {
  const m = /^([0-9.]+)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$/.exec(String(q));
  if (!m)
    return NaN;
  const f = { m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };
  return Number(m[1]) * (m[2] ? f[m[2]] : 1);
}

// The ${NAME} / ${NAME:-default} / $$ substitution of core/config.c, with
// `env` the container's environment. Returns [text, names missing].
function substitute(text, env) {
  const missing = [];
  const out = text.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (m, name, dflt) => {
    if (m === '$$')
      return '$';
    const v = env[name];
    if (v !== undefined && (v !== '' || dflt === undefined))
      return v;
    if (dflt !== undefined)
      return dflt;
    missing.push(name);
    return '';
  });
  return [out, missing];
}

// What a pod's veil container is started with: the StatefulSet, the container,
// its environment (env values and envFrom ConfigMaps), the pipeline ConfigMap
// and its key, the pipeline text.
function podView(docs) {
  const dep = find(docs, 'StatefulSet', 'veil')[0];
  if (!dep)
    return null;
  const pod = dep.spec.template.spec;
  const c = (pod.containers || []).find((x) => x.name === 'veil');
  if (!c)
    return { dep, pod };
  const env = {};
  // Set in every pod by the container runtime.
  env.HOSTNAME = 'veil-0';
  for (const ef of c.envFrom || [])
    if (ef.configMapRef) {
      const cm = find(docs, 'ConfigMap', ef.configMapRef.name)[0];
      Object.assign(env, cm ? cm.data : {});
    }
  for (const e of c.env || [])
    if (e.value !== undefined)
      env[e.name] = e.value;
    else if (e.valueFrom && e.valueFrom.configMapKeyRef) {
      const cm = find(docs, 'ConfigMap', e.valueFrom.configMapKeyRef.name)[0];
      if (cm)
        env[e.name] = cm.data[e.valueFrom.configMapKeyRef.key];
    } else
      env[e.name] = '<from a Secret or the downward API>';
  const arg = (c.args || [])[0] || '';
  const mounts = c.volumeMounts || [];
  const mount = mounts.find((m) => arg.startsWith(`${m.mountPath}/`));
  const vol = mount && (pod.volumes || []).find((v) => v.name === mount.name);
  const cmName = vol && vol.configMap && vol.configMap.name;
  const cm = cmName && find(docs, 'ConfigMap', cmName)[0];
  const key = mount && arg.slice(mount.mountPath.length + 1);
  const text = cm && cm.data && cm.data[key];
  return { dep, pod, c, env, arg, mount, cm, key, text };
}

// ---- --print, for test_k8s.sh -------------------------------------------------
if (process.argv[2] === '--print') {
  const what = process.argv[3];
  const v = podView(load(process.argv[4]));
  if (what === 'pipeline')
    process.stdout.write(v.text);
  else if (what === 'init-script') {
    const init = (v.pod.initContainers || []).find((x) => x.name === 'keys');
    process.stdout.write(init.command[init.command.length - 1]);
  } else if (what === 'env')
    for (const [k, val] of Object.entries(v.env))
      if (k !== 'HOSTNAME')
        console.log(`${k}=${val}`);
  process.exit(0);
}

// ---- the checks ----------------------------------------------------------------------
const args = process.argv.slice(2);
let dockerfile = null;
const renders = [];
for (let i = 0; i < args.length; i++)
  if (args[i] === '--dockerfile')
    dockerfile = args[++i];
  else {
    const eq = args[i].indexOf('=');
    renders.push([args[i].slice(0, eq), args[i].slice(eq + 1)]);
  }
if (!renders.length) {
  console.error('usage: node check_manifests.js --dockerfile DOCKERFILE NAME=RENDERED.yaml...');
  process.exit(2);
}

// The image's user, from the Dockerfile's last USER.
let imageUid = null;
if (dockerfile) {
  const users = [...fs.readFileSync(dockerfile, 'utf8').matchAll(/^USER\s+(\d+)/gm)];
  imageUid = users.length ? Number(users[users.length - 1][1]) : null;
}

// veil's shutdown bounds on SIGTERM (core/kafka.c), by kafka.guarantee:
// at-least-once drains the outputs for up to 10 s (shutdown_timeout_ms) and
// waits up to 10 s more for the last commit (COMMIT_WAIT_MS); exactly-once
// waits up to 60 s for the last transaction's delivery reports (settle),
// then retries the retriable transactional calls for up to 60 s after the
// stop (SHUTDOWN_TXN_MS), the last of them up to 10 s (TXN_CALL_MS).
// Leaving the group comes after either, hence the 10 s of room on top.
const VEIL_SHUTDOWN_S = { 'at-least-once': 20, 'exactly-once': 130 };
const SHUTDOWN_ROOM_S = 10;
const METRICS_PORT = 9464;
const CHAIN = ['consent', 'pseudonymize', 'context', 'dp_model'];

let failed = 0;
for (const [name, file] of renders) {
  const r = new Report(`k8s-${name}`);
  let docs = [];
  r.attempt('the rendering parses as YAML', () => {
    docs = load(file);
    return docs.length > 0;
  });
  for (const d of docs)
    r.attempt(`${d.kind} ${d.metadata && d.metadata.name} is valid against the ${d.apiVersion} schema`,
      () => validate(d));
  r.check(!docs.some((d) => d.kind === 'Secret'),
    'no Secret in the rendering: keys never live in the repository');
  const nss = new Set(docs.map((d) => d.metadata.namespace || ''));
  r.check(nss.size === 1, 'every object in one namespace', [...nss].join(', '));

  const v = podView(docs);
  if (!r.check(v && v.c, 'a StatefulSet veil with a container veil')) {
    failed += r.failed;
    r.finish();
    continue;
  }
  const { dep, pod, c } = v;
  const labels = dep.spec.template.metadata.labels || {};
  const selects = (sel) => sel && Object.keys(sel).length > 0 &&
    Object.entries(sel).every(([k, val]) => labels[k] === val);
  r.check(selects(dep.spec.selector.matchLabels), "the StatefulSet's selector matches its pods");
  // /readyz wants an assigned partition: a surge pod beyond the partitions
  // would never be ready and would stall the rollout (a StatefulSet never
  // surges; OnDelete would leave old pods running).
  const us = dep.spec.updateStrategy || {};
  r.check(!us.type || us.type === 'RollingUpdate',
    'rolling update replaces pods one by one without a surge member', JSON.stringify(us));
  r.check(dep.spec.podManagementPolicy === 'Parallel',
    'pods start and stop in parallel (group members, not an ordered quorum)', dep.spec.podManagementPolicy);

  // Security.
  const psc = pod.securityContext || {};
  r.check(psc.runAsNonRoot === true, 'pod runAsNonRoot: true');
  r.check(Number.isInteger(psc.runAsUser) && psc.runAsUser > 0, 'pod runAsUser is a non-root uid');
  if (imageUid !== null)
    r.check(psc.runAsUser === imageUid, `pod runAsUser is the image's USER ${imageUid}`, psc.runAsUser);
  r.check(psc.seccompProfile && psc.seccompProfile.type === 'RuntimeDefault', 'pod seccompProfile RuntimeDefault');
  r.check(psc.fsGroup === undefined || psc.fsGroup === psc.runAsGroup,
    "fsGroup, if any, is the pod's own group (the state volume; the key copies stay 0400)", psc.fsGroup);
  r.check(pod.automountServiceAccountToken === false, 'no service account token mounted');
  r.check(!pod.hostNetwork && !pod.hostPID && !pod.hostIPC, 'no host namespaces');
  const all = [...(pod.initContainers || []), ...pod.containers];
  for (const x of all) {
    const sc = x.securityContext || {};
    const what = `container ${x.name}`;
    r.check(sc.allowPrivilegeEscalation === false, `${what}: allowPrivilegeEscalation false`);
    r.check(sc.readOnlyRootFilesystem === true, `${what}: readOnlyRootFilesystem true`);
    r.check(sc.capabilities && (sc.capabilities.drop || []).includes('ALL') &&
      !(sc.capabilities.add || []).length, `${what}: drops ALL capabilities, adds none`);
    r.check(!sc.privileged && sc.runAsNonRoot !== false && sc.runAsUser !== 0,
      `${what}: not privileged, not root`);
    r.check(x.image === c.image, `${what}: runs the veil image`, x.image);
    const res = x.resources || {};
    const rq = res.requests || {};
    const lim = res.limits || {};
    r.check(rq.cpu && rq.memory && lim.cpu && lim.memory, `${what}: cpu and memory requests and limits`);
    r.check(quantity(rq.cpu) <= quantity(lim.cpu) && quantity(rq.memory) <= quantity(lim.memory),
      `${what}: requests within limits`);
  }

  // Probes on the metrics port.
  const port = (c.ports || []).find((p) => p.name === 'metrics');
  r.check(port && port.containerPort === METRICS_PORT, `container port named metrics is ${METRICS_PORT}`);
  const probe = (p, pathWant) => p && p.httpGet && p.httpGet.path === pathWant &&
    (p.httpGet.port === 'metrics' || p.httpGet.port === METRICS_PORT);
  r.check(probe(c.livenessProbe, '/healthz'), 'liveness: GET /healthz on metrics');
  r.check(probe(c.readinessProbe, '/readyz'), 'readiness: GET /readyz on metrics');
  r.check(!c.startupProbe || probe(c.startupProbe, '/healthz'), 'startup (if any): GET /healthz on metrics');

  // Shutdown: preStop, then SIGTERM and veil's own bounded shutdown.
  const pre = c.lifecycle && c.lifecycle.preStop;
  let preS = NaN;
  if (pre && pre.exec && pre.exec.command) {
    const cmd = pre.exec.command;
    if (/(^|\/)sleep$/.test(cmd[0]) && cmd.length === 2)
      preS = Number(cmd[1]);
  } else if (pre && pre.sleep)
    preS = pre.sleep.seconds;
  r.check(preS > 0, 'preStop sleeps before SIGTERM', JSON.stringify(pre));

  // The pipeline from its ConfigMap.
  r.check(v.cm && /^veil-pipeline-/.test(v.cm.metadata.name),
    'args[0] is a file of the generated ConfigMap veil-pipeline-<hash>', v.arg);
  r.check(v.mount && v.mount.readOnly === true && !v.mount.subPath,
    'the pipeline ConfigMap is mounted read-only, as a directory (no subPath)');
  // Substitution runs in every scalar, as in core/config.c (not in comments).
  let pl = null;
  const missing = [];
  const subst = (n) => {
    if (typeof n === 'string') {
      const [t, miss] = substitute(n, v.env);
      missing.push(...miss);
      return t;
    }
    if (Array.isArray(n))
      return n.map(subst);
    if (n && typeof n === 'object')
      return Object.fromEntries(Object.entries(n).map(([k, x]) => [subst(k), subst(x)]));
    return n;
  };
  r.attempt(`the ConfigMap holds the pipeline ${v.key}`, () => {
    pl = subst(yaml.load(v.text || ''));
    return pl && pl.kafka && pl.input && pl.plugins;
  });
  r.check(missing.length === 0, "every ${VAR} of the pipeline is in the container's environment",
    `unset: ${missing.join(' ')}`);
  pl = pl || { kafka: {}, input: {}, plugins: [], outputs: {}, keys: {} };
  // The grace period, by the pipeline's guarantee (the default:
  // at-least-once).
  const guarantee = pl.kafka.guarantee || 'at-least-once';
  const shutdownS = VEIL_SHUTDOWN_S[guarantee] || VEIL_SHUTDOWN_S['exactly-once'];
  const grace = pod.terminationGracePeriodSeconds;
  r.check(grace >= preS + shutdownS + SHUTDOWN_ROOM_S,
    `terminationGracePeriodSeconds (${grace}) covers preStop (${preS} s) + veil's ${guarantee} shutdown (${shutdownS} s) + ${SHUTDOWN_ROOM_S} s`);
  r.check(pl.kafka.bootstrap && pl.kafka.bootstrap !== 'embedded', 'kafka.bootstrap names real brokers', pl.kafka.bootstrap);
  r.check(/\$\{KAFKA_BOOTSTRAP\}/.test(v.text || ''), 'kafka.bootstrap comes from KAFKA_BOOTSTRAP (no default)');
  const uses = (pl.plugins || []).map((p) => p.use);
  r.check(JSON.stringify(uses) === JSON.stringify(CHAIN), `the plugin chain is ${CHAIN.join(' → ')}`, uses.join(' → '));
  const schemas = [pl.input, ...Object.values(pl.side_inputs || {}), ...Object.values(pl.outputs || {})]
    .filter((b) => b && b.schema).map((b) => b.schema);
  const badSchemas = schemas.filter((s) => !s.startsWith('/usr/share/veil/schemas/') ||
    !fs.existsSync(path.join(__dirname, '../../schemas', path.basename(s))));
  r.check(schemas.length > 0 && badSchemas.length === 0,
    'every schema path is absolute, into the image\'s /usr/share/veil/schemas/, of a file in schemas/',
    badSchemas.join(' '));
  const listen = /^(.*):(\d+)$/.exec(String((pl.http || {}).listen || ''));
  r.check(listen && listen[1] === '0.0.0.0' && Number(listen[2]) === METRICS_PORT,
    `http.listen is 0.0.0.0:${METRICS_PORT} (probes come from the kubelet, scrapes from Prometheus)`);

  // Keys: the Secret, copied by the init container, read from memory.
  const keys = pl.keys || {};
  const files = keys.files || {};
  r.check(keys.active && files[keys.active], 'keys.active names one of keys.files');
  r.check(!keys.ephemeral, 'no ephemeral key (pseudonyms must survive restarts)');
  const secretVol = (pod.volumes || []).find((x) => x.secret && x.secret.secretName === 'veil-keys');
  r.check(secretVol, 'a volume of the Secret veil-keys');
  const mountsOf = (vol) => all.flatMap((x) => (x.volumeMounts || [])
    .filter((m) => vol && m.name === vol.name).map((m) => ({ x, m })));
  const secretMounts = mountsOf(secretVol);
  r.check(secretMounts.length > 0 && secretMounts.every(({ m }) => m.readOnly === true),
    'the Secret is mounted read-only wherever it is mounted');
  r.check(!secretMounts.some(({ x }) => x === c),
    'veil reads copies, not the Secret volume (its files are root-owned)');
  const keyDirs = new Set(Object.values(files).map((f) => path.posix.dirname(String(f))));
  const keyMount = (c.volumeMounts || []).find((m) => keyDirs.has(m.mountPath));
  r.check(keyDirs.size === 1 && keyMount && keyMount.readOnly === true,
    'the key files of the pipeline are in one directory, mounted read-only in veil', [...keyDirs].join(' '));
  const keyVol = keyMount && (pod.volumes || []).find((x) => x.name === keyMount.name);
  r.check(keyVol && keyVol.emptyDir && keyVol.emptyDir.medium === 'Memory',
    'that directory is an in-memory emptyDir (key material never on the node\'s disk)');
  const init = (pod.initContainers || []).find((x) => x.name === 'keys');
  const initMounts = init ? init.volumeMounts || [] : [];
  r.check(init && initMounts.some((m) => keyMount && m.name === keyMount.name && m.mountPath === keyMount.mountPath) &&
    initMounts.some((m) => secretVol && m.name === secretVol.name),
    'an init container keys mounts the Secret and the key directory at the same path as veil');
  r.check(init && /install -m 0400\b/.test(init.command.join(' ')),
    'it copies each key with mode 0400 (veil refuses group or other access)');

  // Differential privacy: a private mechanism, its accountant on the pod's
  // own volume claim (an emptyDir would restart it at zero with the pod).
  const dpStage = (pl.plugins || []).find((p) => p.use === 'dp_model') || {};
  const dpw = dpStage.with || {};
  r.check(['gaussian', 'tree'].includes(dpw.mechanism), 'dp_model learns under a private mechanism (gaussian or tree)',
    dpw.mechanism);
  const acc = String(dpw.accountant_file || '');
  const accMount = (c.volumeMounts || []).find((m) => acc.startsWith(`${m.mountPath}/`));
  const claims = (dep.spec.volumeClaimTemplates || []).map((t) => t.metadata.name);
  r.check(accMount && !accMount.readOnly && claims.includes(accMount.name) &&
    !(pod.volumes || []).some((x) => x.name === accMount.name),
  "the accountant_file is on a writable mount of one of the pod's volume claims", acc);
  // The catalog (public data the model starts from): every stage's catalog
  // is a file of the operator's ConfigMap veil-catalog, mounted read-only.
  const catalogs = (pl.plugins || []).filter((p) => p.with && p.with.catalog).map((p) => String(p.with.catalog));
  const catalogOk = (f) => (c.volumeMounts || []).some((m) => f.startsWith(`${m.mountPath}/`) && m.readOnly === true &&
    (pod.volumes || []).some((x) => x.name === m.name && x.configMap && x.configMap.name === 'veil-catalog'));
  r.check(['context', 'dp_model'].every((u) => (pl.plugins || []).some((p) => p.use === u && p.with && p.with.catalog)) &&
    catalogs.every(catalogOk),
  'context and dp_model read the catalog from a read-only mount of the ConfigMap veil-catalog', catalogs.join(' '));
  r.check(dpw.prior === 'description' && Number(dpw.prior_neighbors) > 0 && Number(dpw.prior_catalog_window) > 0,
    'dp_model starts from the catalog (prior: description, prior_neighbors, prior_catalog_window)');
  r.check(dpw.max_new_items !== undefined && Number(dpw.max_new_items) === 0,
    'dp_model makes rows for the catalog\'s items only (max_new_items: 0: which rows exist must not depend on the data)',
    dpw.max_new_items);
  const ctxw = ((pl.plugins || []).find((p) => p.use === 'context') || {}).with || {};
  r.check(ctxw.max_new_items !== undefined && Number(ctxw.max_new_items) === 0,
    'context keeps the catalog\'s items only (max_new_items: 0: its shared table of new items would make one person\'s profile depend on what others bought)',
    ctxw.max_new_items);
  const upd = (pl.outputs || {}).model_updates;
  const updIn = (pl.side_inputs || {}).model_updates;
  r.check(upd && updIn && upd.topic === updIn.topic,
    'model updates are shared: the model_updates output and side input are one topic');

  // Service, PDB.
  const svc = find(docs, 'Service')[0];
  r.check(svc, 'a Service');
  if (svc) {
    const a = svc.metadata.annotations || {};
    const sp = (svc.spec.ports || []).find((p) => p.name === 'metrics');
    r.check(a['prometheus.io/scrape'] === 'true', 'Service annotated prometheus.io/scrape: "true"');
    r.check(a['prometheus.io/port'] === String(METRICS_PORT), `prometheus.io/port: "${METRICS_PORT}"`);
    r.check(a['prometheus.io/path'] === '/metrics', 'prometheus.io/path: /metrics');
    r.check(sp && sp.port === METRICS_PORT && (sp.targetPort === 'metrics' || sp.targetPort === METRICS_PORT),
      'Service port metrics targets the container port metrics');
    r.check(selects(svc.spec.selector), "the Service's selector matches veil's pods");
  }
  // Who may connect: the metrics port only, from somewhere named. A rule
  // without `from` admits every source, one without `ports` every port.
  const nps = find(docs, 'NetworkPolicy');
  r.check(nps.length === 1, 'one NetworkPolicy', nps.length);
  if (nps.length === 1) {
    const np = nps[0].spec;
    const rules = np.ingress || [];
    r.check(selects(np.podSelector.matchLabels), "the NetworkPolicy's podSelector matches veil's pods");
    r.check((np.policyTypes || []).includes('Ingress'), 'the NetworkPolicy restricts ingress');
    r.check(rules.length > 0 && rules.every((x) => Array.isArray(x.from) && x.from.length > 0),
      'every ingress rule names its sources (a rule without from admits everyone)');
    r.check(rules.length > 0 && rules.every((x) => Array.isArray(x.ports) && x.ports.length > 0 &&
      x.ports.every((p) => (p.port === 'metrics' || p.port === METRICS_PORT) && (p.protocol || 'TCP') === 'TCP')),
    'ingress reaches the metrics port only');
  }
  const pdb = find(docs, 'PodDisruptionBudget')[0];
  r.check(pdb && pdb.apiVersion === 'policy/v1', 'a PodDisruptionBudget (policy/v1)');
  if (pdb) {
    r.check(selects(pdb.spec.selector.matchLabels), "the PDB's selector matches veil's pods");
    r.check(pdb.spec.maxUnavailable !== undefined ||
      (dep.spec.replicas !== undefined && pdb.spec.minAvailable < dep.spec.replicas),
    'the PDB lets a drain proceed (maxUnavailable, or minAvailable below the replicas)');
  }
  const sa = pod.serviceAccountName;
  r.check(!sa || find(docs, 'ServiceAccount', sa).length === 1, `the ServiceAccount ${sa} is rendered`);
  for (const ef of c.envFrom || [])
    if (ef.configMapRef)
      r.check(find(docs, 'ConfigMap', ef.configMapRef.name).length === 1,
        `envFrom ConfigMap ${ef.configMapRef.name} is rendered`);

  // Scaling.
  const sos = find(docs, 'ScaledObject');
  if (name === 'keda') {
    const so = sos[0];
    r.check(sos.length === 1 && so.apiVersion === 'keda.sh/v1alpha1', 'one ScaledObject keda.sh/v1alpha1');
    r.check(dep.spec.replicas === undefined, 'no replicas in the StatefulSet: KEDA owns the count');
    if (so) {
      const ref = so.spec.scaleTargetRef;
      r.check(ref.name === dep.metadata.name && ref.kind === 'StatefulSet',
        'the ScaledObject scales the StatefulSet veil (kind set: KEDA assumes a Deployment)');
      const t = (so.spec.triggers || []).find((x) => x.type === 'kafka');
      r.check(t, 'a trigger of type kafka (consumer-group lag)');
      const md = (t && t.metadata) || {};
      r.check(/^[1-9][0-9]*$/.test(md.lagThreshold || ''), 'lagThreshold is a positive integer', md.lagThreshold);
      r.check(md.allowIdleConsumers === undefined || md.allowIdleConsumers === 'false',
        'no more pods than partitions (an idle member is never ready)', md.allowIdleConsumers);
      r.check(md.bootstrapServers === v.env.KAFKA_BOOTSTRAP, 'bootstrapServers is the pipeline\'s KAFKA_BOOTSTRAP',
        `${md.bootstrapServers} vs ${v.env.KAFKA_BOOTSTRAP}`);
      r.check(md.consumerGroup && md.consumerGroup === pl.kafka.group, "consumerGroup is the pipeline's group",
        `${md.consumerGroup} vs ${pl.kafka.group}`);
      r.check(md.topic && md.topic === pl.input.topic, "topic is the pipeline's input topic",
        `${md.topic} vs ${pl.input.topic}`);
      r.check(so.spec.minReplicaCount >= 1 && so.spec.maxReplicaCount >= so.spec.minReplicaCount,
        '1 <= minReplicaCount <= maxReplicaCount');
    }
  } else {
    r.check(sos.length === 0, 'no ScaledObject outside the keda overlay');
    r.check(dep.spec.replicas >= 1, 'replicas set', dep.spec.replicas);
    if (name === 'production')
      r.check(dep.spec.replicas >= 2, 'production runs at least two replicas', dep.spec.replicas);
  }
  failed += r.failed;
  r.finish();
}
process.exitCode = failed ? 1 : 0;
