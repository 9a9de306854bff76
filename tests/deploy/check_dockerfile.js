'use strict';
// Static checks of deploy/Dockerfile, for want of hadolint (not in Debian 12):
// Docker's own syntax rules (dockerfile-utils, the linter of the VS Code
// Docker extension), the hadolint rules that apply here, shellcheck on every
// RUN, and what the image must hold for deploy/k8s to work.
//
//   node check_dockerfile.js DOCKERFILE SETUP_SH [BUILD_DIR]
//
// With BUILD_DIR (a built tree: veil, libveil.so, plugins/veil_*.so), the
// Debian packages of every library they link must be installed by the
// runtime stage.
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');
const dockerfileUtils = require('dockerfile-utils');
const { Report } = require('./report');

const [dockerfilePath, setupPath, buildDir] = process.argv.slice(2);
if (!dockerfilePath || !setupPath) {
  console.error('usage: node check_dockerfile.js DOCKERFILE SETUP_SH [BUILD_DIR]');
  process.exit(2);
}
const text = fs.readFileSync(dockerfilePath, 'utf8');
const r = new Report('dockerfile');

// Logical instructions as Docker reads them: comment lines dropped (also
// inside a continuation), lines ending in a backslash joined.
function parse(src) {
  const out = [];
  let cur = null;
  src.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    if (/^\s*#/.test(line) || (!cur && /^\s*$/.test(line)))
      return;
    const cont = /\\\s*$/.test(line);
    const body = cont ? line.replace(/\\\s*$/, '') : line;
    if (!cur)
      cur = { line: i + 1, text: body, shell: cont ? `${body}\\\n` : body };
    else {
      cur.text += ` ${body.trim()}`;
      cur.shell += cont ? `${body}\\\n` : body;
    }
    if (!cont) {
      const m = /^\s*(\S+)\s*([\s\S]*)$/.exec(cur.text);
      cur.keyword = m[1].toUpperCase();
      cur.args = m[2].trim();
      cur.flags = {};
      let rest = cur.args;
      let f;
      while ((f = /^--([a-z-]+)(?:=(\S*))?\s+/.exec(rest))) {
        cur.flags[f[1]] = f[2] === undefined ? true : f[2];
        rest = rest.slice(f[0].length);
      }
      cur.rest = rest;
      // The shell text of a RUN, continuations kept, for shellcheck.
      cur.shell = cur.shell.replace(/^\s*\S+\s*/, '');
      out.push(cur);
      cur = null;
    }
  });
  return out;
}

function jsonForm(ins) {
  if (!ins.rest.startsWith('['))
    return null;
  try {
    const v = JSON.parse(ins.rest);
    return Array.isArray(v) && v.every((s) => typeof s === 'string') ? v : null;
  } catch (e) {
    return null;
  }
}

// Packages named after `apt-get install` in a RUN (options skipped).
function aptPackages(run) {
  const pkgs = [];
  const re = /apt-get\s+install\s+([^&;|]*)/g;
  let m;
  while ((m = re.exec(run.args)))
    for (const w of m[1].split(/\s+/))
      if (w && !w.startsWith('-'))
        pkgs.push(w);
  return pkgs;
}

const ins = parse(text);

// --- Docker's syntax rules -------------------------------------------------
const diags = dockerfileUtils.validate(text);
r.check(diags.length === 0, 'dockerfile-utils finds no problem',
  diags.map((d) => `line ${d.range.start.line + 1}: ${d.message}`).join('; '));

// --- stages -----------------------------------------------------------------
const stages = [];
for (const i of ins) {
  if (i.keyword === 'FROM')
    stages.push({ from: i, body: [] });
  else if (stages.length)
    stages[stages.length - 1].body.push(i);
}
r.check(ins.length && ins[0].keyword === 'FROM' ||
        (ins[0] && ins[0].keyword === 'ARG'), 'starts with FROM (or ARG)');
r.check(stages.length === 2, 'two stages (builder, runtime)', `${stages.length} FROM`);
const fromRe = /^(\S+)(?:\s+AS\s+(\S+))?$/i;
const froms = stages.map((s) => fromRe.exec(s.from.rest) || []);
r.check(froms.length === 2 && froms.every((f) => f[1] === 'debian:bookworm-slim'),
  'both stages FROM debian:bookworm-slim', froms.map((f) => f[1]).join(', '));
r.check(froms[0] && froms[0][2] === 'builder', 'the first stage is named builder');
for (const f of froms)
  r.check(f[1] && /:[^:/]+$/.test(f[1]) && !/:latest$/.test(f[1]),
    `base image ${f[1]} has a pinned tag, not latest (DL3006, DL3007)`);
const builder = stages[0] || { body: [] };
const runtime = stages[1] || { body: [] };

// --- hadolint rules that apply ----------------------------------------------
r.check(!ins.some((i) => i.keyword === 'ADD'), 'no ADD: COPY for files, nothing fetched from URLs (DL3020)');
r.check(!ins.some((i) => i.keyword === 'MAINTAINER'), 'no MAINTAINER (DL4000)');
rule('WORKDIR is absolute (DL3000)',
  ins.filter((x) => x.keyword === 'WORKDIR' && !x.rest.startsWith('/')).map((x) => `line ${x.line}`));
// Each rule once, naming the offending lines.
function rule(what, bad) {
  r.check(bad.length === 0, what, bad.join(', '));
}
const runs = [];
for (const [name, st] of [['builder', builder], ['runtime', runtime]]) {
  const shell = st.body.find((i) => i.keyword === 'SHELL');
  const pipefail = !!(shell && (jsonForm(shell) || []).includes('pipefail'));
  for (const run of st.body.filter((i) => i.keyword === 'RUN'))
    runs.push({ run, a: run.args, where: `${name} line ${run.line}`, pipefail });
  for (const k of ['CMD', 'ENTRYPOINT', 'HEALTHCHECK'])
    r.check(st.body.filter((i) => i.keyword === k).length <= 1, `${name}: at most one ${k} (DL4003, DL4004)`);
}
const bad = (pred) => runs.filter(pred).map((x) => x.where);
const installs = runs.filter((x) => /apt-get\s+install/.test(x.a));
r.check(installs.length === 2, 'each stage installs its packages with apt-get', `${installs.length} RUNs`);
rule('RUN: no sudo (DL3004)', bad((x) => /\bsudo\b/.test(x.a)));
rule('RUN: no cd, WORKDIR instead (DL3003)', bad((x) => /(^|[;&|]\s*)cd\s/.test(x.a)));
rule('RUN: no apt-get upgrade (DL3005)', bad((x) => /apt-get\s+(dist-)?upgrade/.test(x.a)));
rule('RUN: apt-get, not apt (DL3027)', bad((x) => /\bapt\s+(install|update)/.test(x.a)));
rule('RUN: a pipe runs under SHELL [..., "-o", "pipefail", ...] (DL4006)',
  bad((x) => /\|/.test(x.a.replace(/\|\|/g, '')) && !x.pipefail));
const inst = (pred) => installs.filter(pred).map((x) => x.where);
rule('apt-get install -y (DL3014)', inst((x) => !/apt-get\s+install\s[^&;]*(-y\b|--yes\b|--assume-yes\b)/.test(x.a)));
rule('apt-get install --no-install-recommends (DL3015)', inst((x) => !/--no-install-recommends/.test(x.a)));
rule('apt-get update in the same RUN as install (DL3009)', inst((x) => !/apt-get\s+update[\s\S]*apt-get\s+install/.test(x.a)));
rule('apt lists removed in the same RUN as install (DL3009)', inst((x) => !/rm\s+-rf\s+\/var\/lib\/apt\/lists\/\*/.test(x.a)));

// --- shellcheck on every shell-form RUN ---------------------------------------
let shellcheck = null;
try {
  execFileSync('shellcheck', ['--version'], { stdio: 'ignore' });
  shellcheck = 'shellcheck';
} catch (e) { /* reported below */ }
r.check(shellcheck, 'shellcheck is installed (Debian package shellcheck)');
if (shellcheck) {
  const found = [];
  for (const run of ins.filter((i) => i.keyword === 'RUN' && !jsonForm(i))) {
    try {
      execFileSync('shellcheck', ['-s', 'bash', '-f', 'gcc', '-'], { input: `${run.shell}\n`, encoding: 'utf8' });
    } catch (e) {
      found.push(`line ${run.line}: ${`${e.stdout || ''}${e.stderr || ''}`.replace(/\s+/g, ' ').slice(0, 400)}`);
    }
  }
  rule('every RUN passes shellcheck', found);
}

// --- the runtime image ----------------------------------------------------------
const user = runtime.body.filter((i) => i.keyword === 'USER').pop();
const um = user && /^(\d+)(?::(\d+))?$/.exec(user.rest);
r.check(um && Number(um[1]) !== 0, 'the last USER is a numeric non-root uid (DL3002; runAsNonRoot can verify it)',
  user ? user.rest : 'no USER');
const uid = um ? Number(um[1]) : -1;
const runtimeText = runtime.body.map((i) => i.args).join('\n');
r.check(new RegExp(`useradd\\b[^&;]*--uid\\s+${uid}\\b`).test(runtimeText),
  `the runtime stage creates the user with uid ${uid}`);
const lastUserIdx = runtime.body.lastIndexOf(user);
r.check(user && !runtime.body.slice(lastUserIdx + 1).some((i) => i.keyword === 'RUN'),
  'nothing runs as root after USER');
const ep = runtime.body.filter((i) => i.keyword === 'ENTRYPOINT').pop();
const epv = ep && jsonForm(ep);
r.check(epv && epv.length === 2 && path.posix.basename(epv[0]) === 'veil' && epv[1] === 'run',
  'ENTRYPOINT is ["veil", "run"] in exec form (signals reach veil)', ep ? ep.rest : 'none');
const cmd = runtime.body.filter((i) => i.keyword === 'CMD').pop();
const cmdv = cmd && jsonForm(cmd);
r.check(cmdv && cmdv.length === 1 && cmdv[0].endsWith('.yaml'), 'CMD is the pipeline path, exec form',
  cmd ? cmd.rest : 'none');
const copies = runtime.body.filter((i) => i.keyword === 'COPY');
const fromBuilder = copies.filter((c) => c.flags.from === 'builder');
const dests = (cs) => cs.map((c) => c.rest.split(/\s+/));
r.check(dests(fromBuilder).some(([s, d]) => /\/bin\/?$/.test(s) && d === '/usr/local/bin/'),
  'COPY --from=builder of the installed bin/ to /usr/local/bin/');
r.check(dests(fromBuilder).some(([s, d]) => /\/lib\/?$/.test(s) && d === '/usr/local/lib/'),
  'COPY --from=builder of the installed lib/ (libveil, lib/veil/plugins) to /usr/local/lib/');
const builderRun = builder.body.filter((i) => i.keyword === 'RUN').map((i) => i.args).join('\n');
const destdir = /DESTDIR=(\S+)\s+cmake\s+--install/.exec(builderRun);
const prefix = /-DCMAKE_INSTALL_PREFIX=(\S+)/.exec(builderRun);
r.check(destdir && prefix && fromBuilder.every((c) => c.rest.startsWith(`${destdir[1]}${prefix[1]}/`)),
  'the builder installs with DESTDIR into the tree the runtime stage copies');
r.check(prefix && prefix[1] === '/usr/local',
  'installed under /usr/local, whose lib/ GNUInstallDirs keeps free of a multiarch suffix');
const plain = dests(copies.filter((c) => !c.flags.from));
const schemaDest = (plain.find(([s]) => s.replace(/\/$/, '') === 'schemas') || [])[1];
const configDest = (plain.find(([s]) => s.replace(/\/$/, '') === 'config') || [])[1];
r.check(schemaDest === '/usr/share/veil/schemas/', 'schemas/ copied to /usr/share/veil/schemas/', schemaDest);
r.check(configDest && path.posix.join(configDest, 'pipelines', '../../schemas/') === schemaDest,
  "config/ copied so that the example pipelines' ../../schemas paths resolve", configDest);
r.check(runtime.body.some((i) => i.keyword === 'EXPOSE' && /^9464(\/tcp)?$/.test(i.rest)),
  'EXPOSE 9464 (the metrics and health port)');

// --- packages -------------------------------------------------------------------
const builderPkgs = builder.body.filter((i) => i.keyword === 'RUN').flatMap(aptPackages);
const runtimePkgs = runtime.body.filter((i) => i.keyword === 'RUN').flatMap(aptPackages);
r.check(!runtimePkgs.some((p) => /-dev$/.test(p) || p === 'build-essential'),
  'the runtime stage installs no -dev package or compiler', runtimePkgs.join(' '));
r.check(runtimePkgs.includes('ca-certificates'), 'ca-certificates (TLS to the brokers)');
// Named, not left to the base image: without the zone files every event's
// time zone is unknown and its hour and weekday are UTC's (the context
// stage counts them in its gauge timezone_unknown).
r.check(runtimePkgs.includes('tzdata'), 'tzdata (the time zones the context stage reads)');
const setup = fs.readFileSync(setupPath, 'utf8');
const pm = /^PACKAGES=\(([\s\S]*?)\)/m.exec(setup);
const setupPkgs = pm ? pm[1].replace(/#.*$/gm, '').split(/\s+/).filter(Boolean) : [];
r.check(setupPkgs.length > 0, 'deploy/setup.sh has a PACKAGES list');
const devPkgs = setupPkgs.filter((p) => /-dev$/.test(p));
const missingDev = devPkgs.filter((p) => !builderPkgs.includes(p));
r.check(missingDev.length === 0, "the builder installs every -dev package of deploy/setup.sh's PACKAGES",
  `missing: ${missingDev.join(' ')}`);

// What every debian:*-slim image holds: debootstrap's minbase, i.e. the
// Essential and Priority-required packages (apt among them) and everything
// they depend on, as installed on this Debian machine.
function basePackages() {
  const out = execFileSync('dpkg-query', ['-W', '-f',
    '${Package}\t${Essential}\t${Priority}\t${Pre-Depends}, ${Depends}\t${Status}\n'],
  { encoding: 'utf8' });
  const deps = new Map();
  const todo = [];
  for (const line of out.split('\n')) {
    const [pkg, essential, prio, d, status] = line.split('\t');
    if (!pkg || !/ installed$/.test(status || ''))
      continue;
    // Each dependency: the first alternative, without version or arch.
    deps.set(pkg, d.split(',').map((x) => x.split('|')[0].trim().split(/[\s:(]/)[0]).filter(Boolean));
    if (essential === 'yes' || prio === 'required')
      todo.push(pkg);
  }
  const base = new Set();
  while (todo.length) {
    const p = todo.pop();
    if (base.has(p) || !deps.has(p))
      continue;
    base.add(p);
    todo.push(...deps.get(p));
  }
  return base;
}

if (buildDir) {
  // The Debian package of every library that veil, libveil and the plugins
  // link directly, unless the base image has it already.
  const base = basePackages();
  const elves = [path.join(buildDir, 'veil')];
  for (const f of fs.readdirSync(buildDir))
    if (/^libveil\.so/.test(f))
      elves.push(path.join(buildDir, f));
  const pdir = path.join(buildDir, 'plugins');
  for (const f of fs.existsSync(pdir) ? fs.readdirSync(pdir) : [])
    if (/^veil_.*\.so$/.test(f))
      elves.push(path.join(pdir, f));
  const need = new Map();
  const unknown = [];
  for (const elf of elves) {
    const dyn = execFileSync('readelf', ['-d', elf], { encoding: 'utf8' });
    const sonames = [...dyn.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
    const ldd = execFileSync('ldd', [elf], { encoding: 'utf8' });
    for (const so of sonames) {
      if (/^libveil\.so/.test(so))
        continue;
      const esc = so.replace(/[.+]/g, '\\$&');
      // The dynamic loader (NEEDED once libveil has thread-local data:
      // __tls_get_addr) is listed by its path, without "=>".
      const lm = new RegExp(`^\\s*${esc} => (\\S+)`, 'm').exec(ldd) ||
        new RegExp(`^\\s*(/\\S*/${esc}) \\(0x`, 'm').exec(ldd);
      if (!lm) {
        unknown.push(`${path.basename(elf)}: ${so} not found`);
        continue;
      }
      const real = fs.realpathSync(lm[1]);
      let pkg = null;
      for (const p of [real, real.replace(/^\/usr\//, '/'), lm[1]]) {
        try {
          pkg = execFileSync('dpkg-query', ['-S', p], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
            .split(':')[0].trim();
          break;
        } catch (e) { /* next form of the path */ }
      }
      if (!pkg) {
        unknown.push(`${path.basename(elf)}: ${so} (${real}) is in no package`);
        continue;
      }
      if (!base.has(pkg))
        need.set(pkg, `${path.basename(elf)}: ${so}`);
    }
  }
  r.check(elves.length > 2, `found the built binary, libveil and plugins in ${buildDir}`,
    elves.map((e) => path.basename(e)).join(' '));
  r.check(unknown.length === 0, 'every linked library resolves to a Debian package', unknown.join('; '));
  for (const [pkg, why] of need)
    r.check(runtimePkgs.includes(pkg), `the runtime stage installs ${pkg} (${why})`);
}

r.finish();
