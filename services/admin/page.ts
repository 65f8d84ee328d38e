import { createHash } from 'node:crypto';
import { Router } from 'express';
import type { AppDeps } from '../gateway/context';

/**
 * The operator page: one self-contained HTML document (inline CSS and JS, plots drawn as inline
 * SVG, nothing fetched from anywhere but this origin's JSON API). It holds no data, so it is served
 * without credentials; the operator enters the token, which is kept in sessionStorage and sent as
 * `Authorization: Bearer` on every data call. Every value from the API reaches the DOM through
 * textContent or setAttribute, never as markup. The inline script and style are allowed by their
 * SHA-256 hashes in a strict Content-Security-Policy (no 'unsafe-inline', no other sources).
 *
 * Plots carry their numbers for tests and for assistive technology: each bar has `data-day` and
 * `data-value`, each lag point `data-projection`, `data-at` and `data-value`, and every chart
 * shows its total (or latest value) as text.
 */

const STYLE = `
:root {
  --bg: #f3f5f8; --card: #ffffff; --ink: #0f172a; --ink-2: #334155; --muted: #64748b; --line: #e2e8f0; --line-2: #eef2f6;
  --brand: #2563eb; --brand-ink: #1d4ed8; --teal: #0d9488; --amber: #d97706; --violet: #7c3aed; --red: #dc2626;
}
* { box-sizing: border-box; }
html, body { margin: 0; padding: 0; }
body { background: var(--bg); color: var(--ink); font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; -webkit-font-smoothing: antialiased; }
[hidden] { display: none !important; }
.topbar { background: #0f172a; color: #e2e8f0; height: 56px; display: flex; align-items: center; padding: 0 28px; gap: 16px; box-shadow: 0 1px 0 rgba(255,255,255,.04) inset; }
.brand { display: flex; align-items: center; gap: 10px; font-weight: 650; letter-spacing: .2px; color: #fff; font-size: 15px; }
.logo { width: 26px; height: 26px; border-radius: 7px; background: linear-gradient(135deg, #3b82f6, #14b8a6); display: inline-flex; align-items: center; justify-content: center; font-size: 12px; font-weight: 800; color: #fff; }
.brand small { color: #94a3b8; font-weight: 500; font-size: 13px; margin-left: 4px; }
.spacer { flex: 1; }
.topbar .meta { color: #94a3b8; font-size: 12.5px; }
.btn { font: inherit; font-size: 13px; font-weight: 550; border-radius: 7px; padding: 7px 14px; cursor: pointer; border: 1px solid var(--line); background: #fff; color: var(--ink-2); }
.btn:hover { border-color: #cbd5e1; background: #f8fafc; }
.btn.primary { background: var(--brand); border-color: var(--brand); color: #fff; }
.btn.primary:hover { background: var(--brand-ink); }
.topbar .btn { background: transparent; color: #e2e8f0; border-color: #334155; padding: 5px 12px; }
.topbar .btn:hover { background: #1e293b; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 48px; }
.login { max-width: 420px; margin: 72px auto; }
.login h1 { font-size: 20px; margin: 0 0 6px; }
.login p { color: var(--muted); margin: 0 0 18px; }
label { display: block; font-size: 12.5px; font-weight: 600; color: var(--ink-2); margin-bottom: 6px; }
input[type=password], input[type=date], select { font: inherit; font-size: 13.5px; border: 1px solid #cbd5e1; border-radius: 7px; padding: 7px 10px; background: #fff; color: var(--ink); }
input[type=password] { width: 100%; margin-bottom: 14px; }
input:focus, select:focus, .btn:focus-visible { outline: 2px solid #93c5fd; outline-offset: 1px; }
.alert { border-radius: 8px; padding: 10px 12px; font-size: 13px; margin-bottom: 14px; border: 1px solid #fecaca; background: #fef2f2; color: #991b1b; }
.alert.inline { margin: 10px 0 0; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 12px; box-shadow: 0 1px 2px rgba(15,23,42,.04); padding: 18px 20px; margin-bottom: 20px; }
.card-head { display: flex; align-items: center; gap: 12px; margin-bottom: 14px; flex-wrap: wrap; }
.card-head h2 { font-size: 15px; margin: 0; font-weight: 650; }
.card-head .sub { color: var(--muted); font-size: 12.5px; }
.controls { display: flex; gap: 10px; align-items: center; flex-wrap: wrap; }
.controls label { display: inline; margin: 0 2px 0 0; font-weight: 500; color: var(--muted); }
.kpis { display: grid; grid-template-columns: repeat(6, 1fr); gap: 14px; margin-bottom: 20px; }
.kpi { background: var(--card); border: 1px solid var(--line); border-radius: 12px; padding: 14px 16px; box-shadow: 0 1px 2px rgba(15,23,42,.04); }
.kpi .k { color: var(--muted); font-size: 12px; font-weight: 550; text-transform: uppercase; letter-spacing: .4px; }
.kpi .v { font-size: 22px; font-weight: 680; margin-top: 4px; font-variant-numeric: tabular-nums; }
.kpi .h { color: var(--muted); font-size: 12px; }
table { width: 100%; border-collapse: collapse; font-size: 13px; }
th { text-align: left; font-size: 11.5px; text-transform: uppercase; letter-spacing: .4px; color: var(--muted); font-weight: 600; padding: 8px 10px; border-bottom: 1px solid var(--line); background: #f8fafc; white-space: nowrap; }
td { padding: 9px 10px; border-bottom: 1px solid var(--line-2); vertical-align: middle; }
tr:last-child td { border-bottom: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px; color: var(--ink-2); }
.dim { color: var(--muted); }
tbody tr.clickable { cursor: pointer; }
tbody tr.clickable:hover td { background: #f8fafc; }
tbody tr.selected td { background: #eff6ff; }
tbody tr.selected td:first-child { box-shadow: inset 3px 0 0 var(--brand); }
.empty { color: var(--muted); text-align: center; padding: 22px 10px; }
.badge { display: inline-block; border-radius: 999px; padding: 2px 9px; font-size: 11.5px; font-weight: 600; line-height: 18px; background: #f1f5f9; color: #475569; white-space: nowrap; }
.badge.ok { background: #dcfce7; color: #166534; }
.badge.warn { background: #fef3c7; color: #92400e; }
.badge.bad { background: #fee2e2; color: #991b1b; }
.badge.info { background: #dbeafe; color: #1e40af; }
.grid-3 { display: grid; grid-template-columns: 2fr 1fr 1fr; gap: 16px; }
.grid-2 { display: grid; grid-template-columns: 5fr 6fr; gap: 20px; align-items: start; }
.chart { border: 1px solid var(--line-2); border-radius: 10px; padding: 12px 14px 8px; min-width: 0; }
.chart-head { display: flex; align-items: baseline; justify-content: space-between; gap: 8px; margin-bottom: 4px; }
.chart-head h3 { font-size: 13px; margin: 0; font-weight: 620; color: var(--ink-2); }
.chart-total { font-size: 12.5px; color: var(--muted); white-space: nowrap; }
.chart-total strong { color: var(--ink); font-size: 15px; font-variant-numeric: tabular-nums; margin-left: 4px; }
.legend { display: flex; gap: 14px; font-size: 12px; color: var(--muted); margin: 2px 0 6px; flex-wrap: wrap; }
.legend span { display: inline-flex; align-items: center; gap: 6px; }
.swatch { width: 10px; height: 10px; border-radius: 3px; display: inline-block; }
.s-searches { background: #3b82f6; } .s-questions { background: #14b8a6; } .s-docs { background: #6366f1; } .s-chunks { background: #0ea5e9; }
.s-platform { background: #2563eb; } .s-catalog { background: #0d9488; } .s-audit { background: #d97706; } .s-analytics { background: #7c3aed; } .s-other { background: #64748b; }
svg.plot { width: 100%; height: auto; display: block; overflow: visible; }
svg.plot text { fill: #64748b; font-size: 10.5px; font-family: inherit; }
svg.plot text.val { fill: #334155; font-size: 10px; font-weight: 600; }
svg.plot .grid { stroke: #eef2f6; stroke-width: 1; }
svg.plot .axis { stroke: #cbd5e1; stroke-width: 1; }
svg.plot .bar-searches { fill: #3b82f6; } svg.plot .bar-questions { fill: #14b8a6; } svg.plot .bar-docs { fill: #6366f1; } svg.plot .bar-chunks { fill: #0ea5e9; }
svg.plot g.bar:hover rect { opacity: .8; }
svg.plot .line { fill: none; stroke-width: 2; stroke-linejoin: round; stroke-linecap: round; }
svg.plot .l-platform { stroke: #2563eb; fill: #2563eb; } svg.plot .l-catalog { stroke: #0d9488; fill: #0d9488; }
svg.plot .l-audit { stroke: #d97706; fill: #d97706; } svg.plot .l-analytics { stroke: #7c3aed; fill: #7c3aed; } svg.plot .l-other { stroke: #64748b; fill: #64748b; }
svg.plot circle { stroke: #fff; stroke-width: 1.5; }
svg.plot line.l-platform, svg.plot line.l-catalog, svg.plot line.l-audit, svg.plot line.l-analytics, svg.plot line.l-other, svg.plot polyline { fill: none; }
.nowrap { white-space: nowrap; }
.note { color: var(--muted); font-size: 12px; margin: 6px 0 0; }
.status-line { font-size: 12px; color: var(--muted); }
footer { color: var(--muted); font-size: 12px; text-align: center; margin-top: 8px; }
@media (max-width: 1000px) { .kpis { grid-template-columns: repeat(3, 1fr); } .grid-3, .grid-2 { grid-template-columns: 1fr; } }
`;

const SCRIPT = `
(function () {
  'use strict';
  var KEY = 'tenant-rag.operator-token';
  var SVGNS = 'http://www.w3.org/2000/svg';
  var DAY = 86400000;
  var state = { tenants: [], auditTenant: '' };

  function $(id) { return document.getElementById(id); }
  function setAttrs(node, attrs) {
    if (!attrs) return;
    Object.keys(attrs).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (/^on/i.test(k) || k === 'style' || k === 'href' || k === 'src') throw new Error('refusing attribute ' + k);
      if (k === 'text') node.textContent = String(v);
      else node.setAttribute(k, String(v));
    });
  }
  function append(node, children) {
    if (children === null || children === undefined) return;
    (Array.isArray(children) ? children : [children]).forEach(function (c) {
      if (c === null || c === undefined || c === false) return;
      node.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)));
    });
  }
  function el(tag, attrs, children) { var n = document.createElement(tag); setAttrs(n, attrs); append(n, children); return n; }
  function sv(tag, attrs, children) { var n = document.createElementNS(SVGNS, tag); setAttrs(n, attrs); append(n, children); return n; }
  function clear(n) { while (n.firstChild) n.removeChild(n.firstChild); return n; }

  function num(v) { var n = Number(v); return isFinite(n) ? n : 0; }
  function fmtInt(v) { return num(v).toLocaleString('en-US'); }
  function fmtBytes(v) {
    var n = num(v); var u = ['B', 'KB', 'MB', 'GB', 'TB']; var i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return (i === 0 ? String(n) : n.toFixed(n >= 100 ? 0 : 1)) + ' ' + u[i];
  }
  function fmtTime(iso) {
    var d = new Date(iso);
    return isNaN(d.getTime()) ? String(iso) : d.toISOString().slice(0, 19).replace('T', ' ');
  }
  function fmtDay(day) {
    var d = new Date(String(day) + 'T00:00:00Z');
    return isNaN(d.getTime()) ? String(day) : d.toLocaleDateString('en-US', { month: 'short', day: 'numeric', timeZone: 'UTC' });
  }
  function fmtPosition(p) {
    if (!p) return '—';
    return String(p).split('-').map(function (part) { return part.replace(/^0+(?=\\d)/, ''); }).join('-');
  }
  function isoDay(ms) { return new Date(ms).toISOString().slice(0, 10); }
  function daysBetween(from, to) {
    var out = []; var a = Date.parse(from + 'T00:00:00Z'); var b = Date.parse(to + 'T00:00:00Z');
    for (var t = a; t <= b && out.length < 400; t += DAY) out.push(isoDay(t));
    return out;
  }
  function badge(text, kind) { return el('span', { class: 'badge ' + (kind || ''), text: text }); }
  function stateKind(s) {
    s = String(s || '').toLowerCase();
    if (s === 'active' || s === 'running' || s === 'live' || s === 'caught_up' || s === 'success' || s === 'switched' || s === 'ok') return 'ok';
    if (s === 'failed' || s === 'failure' || s === 'error' || s === 'stopped' || s === 'deleted') return 'bad';
    if (s === 'suspended' || s === 'rebuilding' || s === 'catching_up' || s === 'provisioning' || s === 'starting') return 'warn';
    return '';
  }
  function lineClass(name) { return ['platform', 'catalog', 'audit', 'analytics'].indexOf(name) >= 0 ? name : 'other'; }

  // ---- API -------------------------------------------------------------------------------------
  function AuthError(message) { this.name = 'AuthError'; this.message = message; }
  AuthError.prototype = Object.create(Error.prototype);

  function api(path) {
    var token = sessionStorage.getItem(KEY);
    if (!token) return Promise.reject(new AuthError('Enter the operator token to continue.'));
    return fetch(path, { headers: { Authorization: 'Bearer ' + token, Accept: 'application/json' }, cache: 'no-store', credentials: 'omit', redirect: 'error' })
      .then(function (res) {
        if (res.status === 401) throw new AuthError('The operator token was rejected (401 Unauthorized). Check the token and sign in again.');
        if (!res.ok) {
          return res.json().catch(function () { return {}; }).then(function (b) {
            throw new Error((b && (b.detail || b.title)) ? String(b.detail || b.title) + ' (HTTP ' + res.status + ')' : 'HTTP ' + res.status);
          });
        }
        return res.json();
      });
  }

  function section(id, status) { var s = $(id); if (s) s.setAttribute('data-status', status); }
  function showError(id, err) {
    var box = $(id);
    if (!box) return;
    if (!err) { box.hidden = true; box.textContent = ''; return; }
    box.textContent = 'Could not load: ' + (err && err.message ? err.message : String(err));
    box.hidden = false;
  }
  function guard(sectionId, errorId) {
    return function (err) {
      if (err instanceof AuthError) { signOut(err.message); return; }
      section(sectionId, 'error');
      showError(errorId, err);
    };
  }

  // ---- sign in / out ---------------------------------------------------------------------------
  function showLogin(message) {
    $('dashboard').hidden = true;
    $('session').hidden = true;
    $('login').hidden = false;
    var e = $('login-error');
    if (message) { e.textContent = message; e.hidden = false; } else { e.textContent = ''; e.hidden = true; }
    $('token').value = '';
    $('token').focus();
  }
  function signOut(message) {
    sessionStorage.removeItem(KEY);
    document.body.setAttribute('data-signed-in', 'false');
    showLogin(message);
  }
  function start() {
    $('login').hidden = true;
    $('dashboard').hidden = false;
    $('session').hidden = false;
    loadAll();
  }
  $('login-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var t = $('token').value.trim();
    if (!t) { showLogin('Enter the operator token.'); return; }
    sessionStorage.setItem(KEY, t);
    $('login-error').hidden = true;
    // Verify the token before showing anything.
    api('/v1/tenants').then(function () { start(); }, function (err) {
      if (err instanceof AuthError) signOut(err.message);
      else { sessionStorage.removeItem(KEY); showLogin('Could not reach the API: ' + err.message); }
    });
  });
  $('signout').addEventListener('click', function () { signOut('Signed out.'); });
  $('refresh').addEventListener('click', function () { loadAll(); });

  function loadAll() {
    document.body.setAttribute('data-signed-in', 'true');
    return Promise.all([loadTenants().then(function () { return Promise.all([loadUsage(), loadAudit()]); }), loadProjections()]).then(function () {
      $('refreshed').textContent = 'Updated ' + new Date().toISOString().slice(11, 19) + ' UTC';
    });
  }

  // ---- tenants ---------------------------------------------------------------------------------
  function tenantLabel(t) { return t.name && t.name !== t.slug ? t.name + ' (' + t.slug + ')' : String(t.slug); }
  function fillSelect(select, withAll, selected) {
    clear(select);
    if (withAll) select.appendChild(el('option', { value: '', text: 'All tenants (sum)' }));
    state.tenants.forEach(function (t) { select.appendChild(el('option', { value: t.id, text: tenantLabel(t) })); });
    var ids = state.tenants.map(function (t) { return t.id; });
    select.value = ids.indexOf(selected) >= 0 ? selected : withAll ? '' : ids[0] || '';
  }
  function loadTenants() {
    section('tenants-card', 'loading');
    return api('/v1/tenants').then(function (body) {
      state.tenants = Array.isArray(body.items) ? body.items : [];
      renderTenants();
      fillSelect($('usage-tenant'), true, $('usage-tenant').value);
      fillSelect($('audit-tenant'), false, state.auditTenant);
      state.auditTenant = $('audit-tenant').value;
      markSelected();
      showError('tenants-error', null);
      section('tenants-card', 'ready');
    }, guard('tenants-card', 'tenants-error'));
  }
  function renderTenants() {
    var body = clear($('tenants-body'));
    var active = 0;
    state.tenants.forEach(function (t) {
      if (t.status === 'active') active++;
      var q = t.quotas || {}; var rl = t.rate_limit || {};
      var row = el('tr', { class: 'clickable', 'data-tenant-id': t.id, 'data-slug': t.slug, title: 'Show the audit trail of ' + t.slug }, [
        el('td', null, [el('div', { text: t.name }), el('div', { class: 'mono dim', text: t.id })]),
        el('td', { class: 'mono', text: t.slug }),
        el('td', null, badge(t.status, stateKind(t.status))),
        el('td', { class: 'num', 'data-value': q.maxDocuments, text: fmtInt(q.maxDocuments) }),
        el('td', { class: 'num', 'data-value': q.maxBytes, text: fmtBytes(q.maxBytes) }),
        el('td', { class: 'num', text: fmtInt(rl.perSecond) + ' /s · burst ' + fmtInt(rl.burst) }),
        el('td', { class: 'dim', text: fmtTime(t.created_at) }),
      ]);
      row.addEventListener('click', function () {
        state.auditTenant = t.id;
        $('audit-tenant').value = t.id;
        markSelected();
        loadAudit();
      });
      body.appendChild(row);
    });
    if (!state.tenants.length) body.appendChild(el('tr', null, el('td', { colspan: 7, class: 'empty', text: 'No tenants yet.' })));
    $('kpi-tenants').textContent = fmtInt(state.tenants.length);
    $('kpi-tenants-h').textContent = fmtInt(active) + ' active';
    $('tenants-count').textContent = fmtInt(state.tenants.length) + (state.tenants.length === 1 ? ' tenant' : ' tenants') + ' · click a row to see its audit trail';
  }
  function markSelected() {
    Array.prototype.forEach.call($('tenants-body').querySelectorAll('tr[data-tenant-id]'), function (r) {
      r.classList.toggle('selected', r.getAttribute('data-tenant-id') === state.auditTenant);
    });
  }

  // ---- usage -----------------------------------------------------------------------------------
  function initRange() {
    var to = isoDay(Date.now());
    $('usage-to').value = to;
    $('usage-from').value = isoDay(Date.parse(to + 'T00:00:00Z') - 13 * DAY);
  }
  function loadUsage() {
    var from = $('usage-from').value; var to = $('usage-to').value;
    if (!from || !to || from > to) { section('usage-card', 'error'); showError('usage-error', new Error('choose a start date on or before the end date')); return Promise.resolve(); }
    section('usage-card', 'loading');
    var q = '?from=' + encodeURIComponent(from) + '&to=' + encodeURIComponent(to);
    return api('/v1/admin/usage' + q).then(function (body) {
      renderUsage(body);
      showError('usage-error', null);
      section('usage-card', 'ready');
    }, guard('usage-card', 'usage-error'));
  }
  // Activity counters are summed per day; stored totals are end-of-day levels, so a tenant's last
  // row carries forward over days on which it had no row.
  function aggregate(rows, tenantId, days) {
    var sel = rows.filter(function (r) { return !tenantId || r.tenant_id === tenantId; });
    var byDay = {}; days.forEach(function (d) { byDay[d] = { searches: 0, questions: 0, docs: 0, chunks: 0, bytes: 0 }; });
    var byTenant = {};
    sel.forEach(function (r) {
      var d = byDay[r.day];
      if (d) { d.searches += num(r.searches); d.questions += num(r.questions); }
      (byTenant[r.tenant_id] = byTenant[r.tenant_id] || {})[r.day] = r;
    });
    Object.keys(byTenant).forEach(function (tid) {
      var last = null;
      days.forEach(function (day) {
        if (byTenant[tid][day]) last = byTenant[tid][day];
        if (last) { byDay[day].docs += num(last.documents_stored); byDay[day].chunks += num(last.chunks_stored); byDay[day].bytes += num(last.bytes_stored); }
      });
    });
    return days.map(function (d) { return { day: d, v: byDay[d] }; });
  }
  function renderUsage(body) {
    var rows = Array.isArray(body.days) ? body.days : [];
    var days = daysBetween(String(body.from), String(body.to));
    var tenant = $('usage-tenant').value;
    var data = aggregate(rows, tenant, days);
    var s = 0, qn = 0;
    data.forEach(function (d) { s += d.v.searches; qn += d.v.questions; });
    var last = data.length ? data[data.length - 1].v : { docs: 0, chunks: 0, bytes: 0 };
    $('kpi-searches').textContent = fmtInt(s);
    $('kpi-questions').textContent = fmtInt(qn);
    $('kpi-docs').textContent = fmtInt(last.docs);
    $('kpi-chunks').textContent = fmtInt(last.chunks);
    $('kpi-bytes').textContent = fmtBytes(last.bytes) + ' stored';
    var range = fmtDay(body.from) + ' – ' + fmtDay(body.to);
    ['kpi-searches-h', 'kpi-questions-h'].forEach(function (id) { $(id).textContent = range; });
    $('kpi-docs-h').textContent = 'at end of ' + fmtDay(body.to);

    var activity = $('chart-activity');
    activity.setAttribute('data-total', String(s + qn));
    $('activity-total').textContent = fmtInt(s + qn);
    barChart(clear($('plot-activity')), data.map(function (d) { return { day: d.day, parts: [['searches', d.v.searches], ['questions', d.v.questions]] }; }), 'Searches and questions per day');

    $('chart-docs').setAttribute('data-latest', String(last.docs));
    $('docs-latest').textContent = fmtInt(last.docs);
    barChart(clear($('plot-docs')), data.map(function (d) { return { day: d.day, parts: [['docs', d.v.docs]] }; }), 'Documents stored per day');

    $('chart-chunks').setAttribute('data-latest', String(last.chunks));
    $('chunks-latest').textContent = fmtInt(last.chunks);
    barChart(clear($('plot-chunks')), data.map(function (d) { return { day: d.day, parts: [['chunks', d.v.chunks]] }; }), 'Chunks stored per day');
  }
  function niceScale(max) {
    var raw = Math.max(max, 1) / 4;
    var p = Math.pow(10, Math.floor(Math.log(raw) / Math.LN10));
    var m = raw / p;
    var step = Math.max(1, (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p);
    return { top: Math.max(step, Math.ceil(max / step) * step), step: step };
  }
  function shortNum(v) { return v >= 1e6 ? (v / 1e6).toFixed(1).replace(/\\.0$/, '') + 'M' : v >= 1e4 ? (v / 1e3).toFixed(0) + 'k' : String(v); }
  // Draw at the host's pixel width so the labels keep their size on any screen.
  function plotWidth(host, fallback) {
    var w = Math.round(host.getBoundingClientRect().width);
    return w >= 200 ? w : fallback;
  }
  function barChart(host, data, label) {
    var W = plotWidth(host, 620), H = 200;
    var ml = 36, mr = 8, mt = 16, mb = 24;
    var iw = W - ml - mr, ih = H - mt - mb;
    var max = 0;
    data.forEach(function (d) { var t = 0; d.parts.forEach(function (p) { t += p[1]; }); max = Math.max(max, t); });
    var sc = niceScale(max);
    var y = function (v) { return mt + ih - (v / sc.top) * ih; };
    var root = sv('svg', { class: 'plot', viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': label });
    for (var v = 0; v <= sc.top + 1e-9; v += sc.step) {
      root.appendChild(sv('line', { class: v === 0 ? 'axis' : 'grid', x1: ml, x2: W - mr, y1: y(v), y2: y(v) }));
      root.appendChild(sv('text', { x: ml - 6, y: y(v) + 3.5, 'text-anchor': 'end', text: shortNum(v) }));
    }
    var n = Math.max(1, data.length), band = iw / n, bw = Math.max(2, Math.min(28, band * 0.62));
    var every = Math.max(1, Math.ceil(n / (W < 400 ? 4 : 8)));
    data.forEach(function (d, i) {
      var total = 0; d.parts.forEach(function (p) { total += p[1]; });
      var x = ml + band * i + (band - bw) / 2;
      var tip = d.day + ': ' + d.parts.map(function (p) { return fmtInt(p[1]) + ' ' + p[0]; }).join(', ');
      var g = sv('g', { class: 'bar', 'data-day': d.day, 'data-value': total }, sv('title', { text: tip }));
      var base = 0;
      d.parts.forEach(function (p) {
        if (p[1] <= 0) return;
        g.appendChild(sv('rect', { class: 'bar-' + p[0], 'data-series': p[0], 'data-value': p[1], x: x.toFixed(2), width: bw.toFixed(2), y: y(base + p[1]).toFixed(2), height: Math.max(0.5, y(base) - y(base + p[1])).toFixed(2), rx: 2 }));
        base += p[1];
      });
      if (total > 0 && band >= 16) g.appendChild(sv('text', { class: 'val', x: (x + bw / 2).toFixed(2), y: (y(total) - 4).toFixed(2), 'text-anchor': 'middle', text: shortNum(total) }));
      root.appendChild(g);
      if (i % every === 0) {
        root.appendChild(sv('text', { x: (x + bw / 2).toFixed(2), y: H - 6, 'text-anchor': 'middle', text: d.day.slice(5) }));
      }
    });
    host.appendChild(root);
  }

  // ---- projections -----------------------------------------------------------------------------
  function loadProjections() {
    section('projections-card', 'loading');
    return Promise.all([api('/v1/admin/projections'), api('/v1/admin/projections/history')]).then(function (r) {
      renderProjections(Array.isArray(r[0].items) ? r[0].items : []);
      renderLag(Array.isArray(r[1].items) ? r[1].items : [], (r[0].items || []).map(function (p) { return p.name; }));
      showError('projections-error', null);
      section('projections-card', 'ready');
    }, guard('projections-card', 'projections-error'));
  }
  function renderProjections(items) {
    var body = clear($('projections-body'));
    var worst = null, behind = 0;
    items.forEach(function (p) {
      if (typeof p.lag_events === 'number') { worst = Math.max(worst || 0, p.lag_events); if (p.lag_events > 0) behind++; }
      if (p.state && stateKind(p.state) === 'bad') behind++;
      var rb = p.rebuild;
      var rebuild = rb ? [badge(rb.state, stateKind(rb.state)), ' ', el('span', { class: 'dim', text: fmtInt(rb.done) + (rb.total !== null && rb.total !== undefined ? ' / ' + fmtInt(rb.total) : '') })] : el('span', { class: 'dim', text: p.rebuildable ? 'available' : '—' });
      var stateCell = [badge(p.state, stateKind(p.state))];
      if (p.error) stateCell.push(el('div', { class: 'dim', text: p.error }));
      body.appendChild(el('tr', { 'data-projection': p.name }, [
        el('td', { class: 'nowrap' }, [el('span', { class: 'swatch s-' + lineClass(p.name) }), ' ', el('strong', { text: p.name })]),
        el('td', { class: 'num', text: 'v' + String(p.version) }),
        el('td', { text: p.source }),
        el('td', null, stateCell),
        el('td', { class: 'mono', title: p.position || '', text: fmtPosition(p.position) }),
        el('td', { class: 'num', 'data-value': p.lag_events === null ? '' : p.lag_events, text: p.lag_events === null || p.lag_events === undefined ? '—' : fmtInt(p.lag_events) }),
        el('td', { class: 'num', text: p.lag_seconds === null || p.lag_seconds === undefined ? '—' : num(p.lag_seconds).toFixed(1) + ' s' }),
        el('td', null, rebuild),
      ]));
    });
    if (!items.length) body.appendChild(el('tr', null, el('td', { colspan: 8, class: 'empty', text: 'No projections reported.' })));
    $('kpi-lag').textContent = worst === null ? '—' : fmtInt(worst);
    $('kpi-lag-h').textContent = items.length ? (behind ? fmtInt(behind) + ' of ' + items.length + ' behind or failing' : 'all ' + items.length + ' caught up') : '';
  }
  function renderLag(history, names) {
    var host = clear($('plot-lag'));
    var legend = clear($('lag-legend'));
    history.forEach(function (h) { Object.keys(h.lag || {}).forEach(function (n) { if (names.indexOf(n) < 0) names.push(n); }); });
    names.forEach(function (n) { legend.appendChild(el('span', null, [el('i', { class: 'swatch s-' + lineClass(n) }), n])); });
    var now = Date.now(), t0 = now - 3600000;
    var W = plotWidth(host, 620), H = 200, ml = 36, mr = 12, mt = 12, mb = 24, iw = W - ml - mr, ih = H - mt - mb;
    var pts = history.map(function (h) { return { at: String(h.at), t: Date.parse(h.at), lag: h.lag || {} }; }).filter(function (p) { return !isNaN(p.t); });
    var max = 0;
    pts.forEach(function (p) { names.forEach(function (n) { var v = p.lag[n]; if (typeof v === 'number') max = Math.max(max, v); }); });
    var sc = niceScale(max);
    var x = function (t) { return ml + Math.min(1, Math.max(0, (t - t0) / 3600000)) * iw; };
    var y = function (v) { return mt + ih - (v / sc.top) * ih; };
    var root = sv('svg', { class: 'plot', viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': 'Projection lag in events over the last hour' });
    for (var v = 0; v <= sc.top + 1e-9; v += sc.step) {
      root.appendChild(sv('line', { class: v === 0 ? 'axis' : 'grid', x1: ml, x2: W - mr, y1: y(v), y2: y(v) }));
      root.appendChild(sv('text', { x: ml - 6, y: y(v) + 3.5, 'text-anchor': 'end', text: shortNum(v) }));
    }
    [60, 45, 30, 15, 0].forEach(function (m) {
      root.appendChild(sv('text', { x: x(now - m * 60000), y: H - 6, 'text-anchor': m === 60 ? 'start' : m === 0 ? 'end' : 'middle', text: m === 0 ? 'now' : '−' + m + ' min' }));
    });
    names.forEach(function (n) {
      var cls = 'l-' + lineClass(n);
      var seg = [];
      var flush = function () { if (seg.length > 1) root.appendChild(sv('polyline', { class: 'line ' + cls, points: seg.join(' ') })); seg = []; };
      pts.forEach(function (p) {
        var v = p.lag[n];
        if (typeof v !== 'number') { flush(); return; }
        seg.push(x(p.t).toFixed(1) + ',' + y(v).toFixed(1));
      });
      flush();
      pts.forEach(function (p) {
        var v = p.lag[n];
        if (typeof v !== 'number') return;
        root.appendChild(sv('circle', { class: cls, 'data-projection': n, 'data-at': p.at, 'data-value': v, cx: x(p.t).toFixed(1), cy: y(v).toFixed(1), r: 3.5 }, sv('title', { text: n + ' · ' + fmtTime(p.at) + ' UTC · ' + fmtInt(v) + ' events behind' })));
      });
    });
    host.appendChild(root);
    var latest = pts.length ? pts[pts.length - 1] : null;
    $('chart-lag').setAttribute('data-samples', String(pts.length));
    $('lag-note').textContent = pts.length
      ? fmtInt(pts.length) + (pts.length === 1 ? ' sample' : ' samples') + ' (one a minute); last at ' + fmtTime(latest.at) + ' UTC. Lag counts events not yet applied; — means the source reports no count.'
      : 'No samples yet: the server records one a minute.';
  }

  // ---- audit -----------------------------------------------------------------------------------
  function loadAudit() {
    var id = state.auditTenant;
    var body = $('audit-body');
    if (!id) { clear(body).appendChild(el('tr', null, el('td', { colspan: 6, class: 'empty', text: 'Select a tenant.' }))); section('audit-card', 'ready'); return Promise.resolve(); }
    section('audit-card', 'loading');
    return api('/v1/admin/tenants/' + encodeURIComponent(id) + '/audit?limit=20').then(function (res) {
      if (state.auditTenant !== id) return;
      var items = Array.isArray(res.items) ? res.items : [];
      clear(body);
      items.forEach(function (a) {
        body.appendChild(el('tr', { 'data-seq': a.seq, 'data-type': a.type }, [
          el('td', { class: 'num mono', text: String(a.seq) }),
          el('td', { class: 'dim', text: fmtTime(a.occurred_at) }),
          el('td', null, el('strong', { text: a.type })),
          el('td', { class: 'mono', text: a.actor }),
          el('td', { class: 'mono', text: a.subject === null || a.subject === undefined ? '—' : a.subject }),
          el('td', null, badge(a.result, stateKind(a.result))),
        ]));
      });
      if (!items.length) body.appendChild(el('tr', null, el('td', { colspan: 6, class: 'empty', text: 'No audit events recorded for this tenant yet.' })));
      var t = state.tenants.filter(function (x) { return x.id === id; })[0];
      $('audit-sub').textContent = 'Latest ' + items.length + ' events' + (t ? ' of ' + tenantLabel(t) : '') + ', newest first';
      showError('audit-error', null);
      section('audit-card', 'ready');
    }, guard('audit-card', 'audit-error'));
  }

  // ---- wiring ----------------------------------------------------------------------------------
  $('usage-tenant').addEventListener('change', function () { loadUsage(); });
  $('usage-from').addEventListener('change', function () { loadUsage(); });
  $('usage-to').addEventListener('change', function () { loadUsage(); });
  $('audit-tenant').addEventListener('change', function () { state.auditTenant = $('audit-tenant').value; markSelected(); loadAudit(); });
  setInterval(function () { if (sessionStorage.getItem(KEY) && !$('dashboard').hidden) loadProjections(); }, 60000);

  initRange();
  if (sessionStorage.getItem(KEY)) start(); else showLogin(null);
})();
`;

const BODY = `
<header class="topbar">
  <div class="brand"><span class="logo" aria-hidden="true">tr</span>tenant-rag <small>Operator console</small></div>
  <div class="spacer"></div>
  <div id="session" class="controls" hidden>
    <span id="refreshed" class="meta"></span>
    <button type="button" id="refresh" class="btn">Refresh</button>
    <button type="button" id="signout" class="btn">Sign out</button>
  </div>
</header>
<main>
  <section id="login" class="card login" hidden>
    <h1>Sign in</h1>
    <p>Enter the operator token (the server's ADMIN_TOKEN). It is kept in this tab's session storage only and sent as a bearer token to the operator API.</p>
    <div id="login-error" class="alert" role="alert" hidden></div>
    <form id="login-form" autocomplete="off">
      <label for="token">Operator token</label>
      <input type="password" id="token" name="token" autocomplete="current-password" spellcheck="false" required>
      <button type="submit" id="signin" class="btn primary">Sign in</button>
    </form>
  </section>

  <div id="dashboard" hidden>
    <div class="kpis">
      <div class="kpi"><div class="k">Tenants</div><div class="v" id="kpi-tenants">–</div><div class="h" id="kpi-tenants-h">&nbsp;</div></div>
      <div class="kpi"><div class="k">Searches</div><div class="v" id="kpi-searches">–</div><div class="h" id="kpi-searches-h">&nbsp;</div></div>
      <div class="kpi"><div class="k">Questions</div><div class="v" id="kpi-questions">–</div><div class="h" id="kpi-questions-h">&nbsp;</div></div>
      <div class="kpi"><div class="k">Documents stored</div><div class="v" id="kpi-docs">–</div><div class="h" id="kpi-docs-h">&nbsp;</div></div>
      <div class="kpi"><div class="k">Chunks stored</div><div class="v" id="kpi-chunks">–</div><div class="h" id="kpi-bytes">&nbsp;</div></div>
      <div class="kpi"><div class="k">Projection lag</div><div class="v" id="kpi-lag">–</div><div class="h" id="kpi-lag-h">&nbsp;</div></div>
    </div>

    <section id="tenants-card" class="card" data-status="loading">
      <div class="card-head"><h2>Tenants</h2><span class="sub" id="tenants-count"></span></div>
      <table id="tenants-table">
        <thead><tr><th>Tenant</th><th>Slug</th><th>Status</th><th class="num">Max documents</th><th class="num">Max storage</th><th class="num">Rate limit</th><th>Created (UTC)</th></tr></thead>
        <tbody id="tenants-body"></tbody>
      </table>
      <div id="tenants-error" class="alert inline" role="alert" hidden></div>
    </section>

    <section id="usage-card" class="card" data-status="loading">
      <div class="card-head">
        <h2>Usage</h2><span class="sub">per UTC day, from the analytics projection</span>
        <div class="spacer"></div>
        <div class="controls">
          <label for="usage-tenant">Tenant</label><select id="usage-tenant"><option value="">All tenants (sum)</option></select>
          <label for="usage-from">From</label><input type="date" id="usage-from">
          <label for="usage-to">To</label><input type="date" id="usage-to">
        </div>
      </div>
      <div class="grid-3">
        <div class="chart" id="chart-activity">
          <div class="chart-head"><h3>Searches + questions</h3><div class="chart-total">Total<strong id="activity-total">–</strong></div></div>
          <div class="legend"><span><i class="swatch s-searches"></i>Searches</span><span><i class="swatch s-questions"></i>Questions</span></div>
          <div id="plot-activity"></div>
        </div>
        <div class="chart" id="chart-docs">
          <div class="chart-head"><h3>Documents stored</h3><div class="chart-total">Latest<strong id="docs-latest">–</strong></div></div>
          <div class="legend"><span><i class="swatch s-docs"></i>End-of-day total</span></div>
          <div id="plot-docs"></div>
        </div>
        <div class="chart" id="chart-chunks">
          <div class="chart-head"><h3>Chunks stored</h3><div class="chart-total">Latest<strong id="chunks-latest">–</strong></div></div>
          <div class="legend"><span><i class="swatch s-chunks"></i>End-of-day total</span></div>
          <div id="plot-chunks"></div>
        </div>
      </div>
      <p class="note">Stored totals are end-of-day levels; a day without activity carries the previous day's level.</p>
      <div id="usage-error" class="alert inline" role="alert" hidden></div>
    </section>

    <section id="projections-card" class="card" data-status="loading">
      <div class="card-head"><h2>Projections</h2><span class="sub">read models built from the event store</span></div>
      <div class="grid-2">
        <div class="chart" id="chart-lag">
          <div class="chart-head"><h3>Lag over the last hour (events behind)</h3></div>
          <div class="legend" id="lag-legend"></div>
          <div id="plot-lag"></div>
          <p class="note" id="lag-note"></p>
        </div>
        <div>
          <table id="projections-table">
            <thead><tr><th>Name</th><th class="num">Version</th><th>Source</th><th>State</th><th>Position</th><th class="num">Lag (events)</th><th class="num">Lag (s)</th><th>Rebuild</th></tr></thead>
            <tbody id="projections-body"></tbody>
          </table>
        </div>
      </div>
      <div id="projections-error" class="alert inline" role="alert" hidden></div>
    </section>

    <section id="audit-card" class="card" data-status="loading">
      <div class="card-head">
        <h2>Recent audit events</h2><span class="sub" id="audit-sub"></span>
        <div class="spacer"></div>
        <div class="controls"><label for="audit-tenant">Tenant</label><select id="audit-tenant"></select></div>
      </div>
      <table id="audit-table">
        <thead><tr><th class="num">Seq</th><th>Time (UTC)</th><th>Event</th><th>Actor</th><th>Subject</th><th>Result</th></tr></thead>
        <tbody id="audit-body"></tbody>
      </table>
      <div id="audit-error" class="alert inline" role="alert" hidden></div>
    </section>
    <footer>tenant-rag operator console · data from /v1/tenants and /v1/admin/*</footer>
  </div>
</main>
`;

const sha256 = (s: string) => `'sha256-${createHash('sha256').update(s, 'utf8').digest('base64')}'`;

export const ADMIN_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>tenant-rag · Operator console</title>
<link rel="icon" href="data:,">
<style>${STYLE}</style>
</head>
<body data-signed-in="false">
${BODY}
<script>${SCRIPT}</script>
</body>
</html>
`;

/** Only this origin's API, only the page's own inline script and style (by hash), nothing else. */
export const ADMIN_PAGE_CSP = [
  "default-src 'none'",
  `script-src ${sha256(SCRIPT)}`,
  `style-src ${sha256(STYLE)}`,
  "connect-src 'self'",
  'img-src data:',
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

export function adminPage(deps: AppDeps): Router {
  const r = Router();
  r.get('/admin', (_req, res) => {
    res.setHeader('Content-Security-Policy', ADMIN_PAGE_CSP);
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('X-Frame-Options', 'DENY');
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
    res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
    res.setHeader('Cache-Control', 'no-store');
    if (deps.config.production) res.setHeader('Strict-Transport-Security', 'max-age=31536000');
    res.type('html').send(ADMIN_PAGE_HTML);
  });
  return r;
}
