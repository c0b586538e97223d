// fitsync staff dashboard: live programme figures over the fitsync.v1 WebSocket.
//
// Flow: the staff token (kept in sessionStorage for this tab) -> hello ->
// welcome -> stats.subscribe (the week shown; none = the current week) ->
// the reply and then "stats" pushes (at most one a second) re-render the page.
// A dropped or unreachable server is retried with exponential backoff
// (1 s, 2 s, 4 s ... 30 s); figures the server cannot read for a moment
// (a retryable error such as unavailable) are asked for again on the same
// connection, with their own backoff; a refused token (invalid_token,
// token_expired, or forbidden for a non-staff token) is never retried until
// a new one is entered.
//
// Only aggregates arrive here. A figure may be the string "<5" (fewer than k
// members): it is shown as such, never turned into a number; a chart leaves
// it out and says so in its label.
//
// The server's Content-Security-Policy forbids inline script and style, so
// everything is built with DOM calls (textContent, classList), never
// innerHTML or style attributes. Chart.js (window.Chart) comes from
// /dashboard/vendor/chart.umd.js.
'use strict';

(() => {
  const SUBPROTOCOL = 'fitsync.v1';
  const TOKEN_KEY = 'fitsync.dashboard.token';
  const DEVICE_KEY = 'fitsync.dashboard.device';
  const BACKOFF_MIN_MS = 1000;
  const BACKOFF_MAX_MS = 30000;
  const DAY = 86400000;
  const REFUSED_CODES = new Set(['invalid_token', 'token_expired', 'forbidden', 'unauthenticated']);

  const $ = (id) => document.querySelector(`[data-testid="${id}"]`);

  const state = {
    token: null, // the token being used
    ws: null,
    gen: 0, // connection generation: callbacks of an older socket ignore themselves
    opened: false, // this socket reached "open"
    backoff: BACKOFF_MIN_MS, // before the next reconnect
    subBackoff: BACKOFF_MIN_MS, // before asking again for figures the server could not read
    retryTimer: null,
    tickTimer: null,
    retryAt: 0,
    retryWhy: '',
    refused: false,
    accepted: false, // this token has been accepted (a stats.subscribe reply)
    live: false,
    wantWeek: null, // the week asked for; null = the current week
    expectWeek: null, // the week of the last subscribe reply: pushes for other weeks are ignored
    currentWeek: null, // the server's current week (welcome.week)
    subId: null,
    nextId: 0,
    stats: null,
    charts: null,
  };

  /* ---------------------------------------------------------------- */
  /* formatting                                                        */

  const nf = new Intl.NumberFormat('en-GB', { maximumFractionDigits: 0 });
  const pf = new Intl.NumberFormat('en-GB', { maximumFractionDigits: 0, style: 'percent' });
  const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
  const isSuppressed = (v) => typeof v === 'string';

  function fmt(v) {
    if (isNum(v)) return nf.format(v);
    if (isSuppressed(v)) return v; // "<5": shown as the server wrote it
    return '–';
  }

  /* Share num/den as a fraction 0..1, null when either is suppressed or den is 0. */
  function share(num, den) {
    if (!isNum(num) || !isNum(den) || den <= 0) return null;
    return num / den;
  }

  function kText() {
    const k = state.stats && isNum(state.stats.k) ? state.stats.k : 5;
    return `fewer than ${k} members: suppressed`;
  }

  /* Writes a figure into an element; marks suppressed ones. */
  function setFig(el, v) {
    if (!el) return;
    el.textContent = fmt(v);
    el.classList.toggle('suppressed', isSuppressed(v));
    if (isSuppressed(v)) el.title = kText();
    else el.removeAttribute('title');
  }

  /* A share as text: "43%", "suppressed" or "–". */
  function shareText(num, den) {
    if (isSuppressed(num) || isSuppressed(den)) return 'suppressed';
    const s = share(num, den);
    return s === null ? '–' : pf.format(s);
  }

  /* ---------------------------------------------------------------- */
  /* ISO weeks (Monday..Sunday, named 2026-W49)                        */

  function weekMonday(week) {
    const m = /^(\d{4})-W(\d{2})$/.exec(week || '');
    if (!m) return NaN;
    const jan4 = Date.UTC(Number(m[1]), 0, 4);
    const dow = (new Date(jan4).getUTCDay() + 6) % 7; // 0 = Monday
    return jan4 - dow * DAY + (Number(m[2]) - 1) * 7 * DAY;
  }
  function isoWeekOf(ms) {
    const dow = (new Date(ms).getUTCDay() + 6) % 7;
    const thu = ms + (3 - dow) * DAY;
    const y = new Date(thu).getUTCFullYear();
    const n = 1 + Math.floor((thu - Date.UTC(y, 0, 1)) / (7 * DAY));
    return `${y}-W${String(n).padStart(2, '0')}`;
  }
  const addWeeks = (week, n) => isoWeekOf(weekMonday(week) + n * 7 * DAY);
  const dayFmt = new Intl.DateTimeFormat('en-GB', { weekday: 'short', day: 'numeric', month: 'short', timeZone: 'UTC' });
  const dmFmt = new Intl.DateTimeFormat('en-GB', { day: 'numeric', month: 'short', timeZone: 'UTC' });
  const yearFmt = new Intl.DateTimeFormat('en-GB', { day: 'numeric', month: 'short', year: 'numeric', timeZone: 'UTC' });
  /* "30 Nov – 6 Dec 2026" */
  function weekSpan(week) {
    const mon = weekMonday(week);
    if (Number.isNaN(mon)) return week;
    return `${dmFmt.format(mon)} – ${yearFmt.format(mon + 6 * DAY)}`;
  }
  function dateText(date) {
    const ms = Date.parse(`${date}T00:00:00Z`);
    return Number.isNaN(ms) ? String(date || '') : dayFmt.format(ms);
  }
  const timeFmt = new Intl.DateTimeFormat('en-GB', { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  const hmFmt = new Intl.DateTimeFormat('en-GB', { hour: '2-digit', minute: '2-digit' });

  /* ---------------------------------------------------------------- */
  /* status line and panels                                            */

  function setStatus(kind, text) {
    const el = $('status');
    el.dataset.state = kind;
    el.textContent = text;
    $('reconnect-now').hidden = !(kind === 'reconnecting' || kind === 'unreachable' || kind === 'retrying');
    $('dashboard').classList.toggle('stale', kind !== 'live');
  }

  function showError(text) {
    const el = $('error');
    el.textContent = text || '';
    el.hidden = !text;
  }

  function showNotice(text) {
    const el = $('notice');
    el.textContent = text || '';
    el.hidden = !text;
  }

  function showSignin(show) {
    $('signin').hidden = !show;
    $('sign-out').hidden = show && !state.token;
    if (show) setTimeout(() => $('token-input').focus(), 0);
  }

  /* ---------------------------------------------------------------- */
  /* the connection                                                    */

  function deviceId() {
    let id = sessionStorage.getItem(DEVICE_KEY);
    if (!id || !/^dashboard-[0-9a-f]{16}$/.test(id)) {
      const b = new Uint8Array(8);
      crypto.getRandomValues(b);
      id = `dashboard-${Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('')}`;
      sessionStorage.setItem(DEVICE_KEY, id);
    }
    return id;
  }

  function wsUrl() {
    return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`;
  }

  function clearRetry() {
    clearTimeout(state.retryTimer);
    clearInterval(state.tickTimer);
    state.retryTimer = state.tickTimer = null;
  }

  function dropSocket() {
    state.gen++; // its late events are ignored
    const ws = state.ws;
    state.ws = null;
    state.live = false;
    if (ws && (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING)) {
      try {
        ws.close(1000);
      } catch {
        /* already closing */
      }
    }
  }

  function send(msg) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(msg));
  }

  function connect() {
    clearRetry();
    dropSocket();
    if (!state.token || state.refused) return;
    const gen = state.gen;
    state.opened = false;
    setStatus('connecting', state.accepted ? 'reconnecting…' : 'connecting…');
    let ws;
    try {
      ws = new WebSocket(wsUrl(), SUBPROTOCOL);
    } catch (e) {
      scheduleRetry(`server unreachable (${e.message})`, 'unreachable');
      return;
    }
    state.ws = ws;
    ws.onopen = () => {
      if (gen !== state.gen) return;
      state.opened = true;
      send({ type: 'hello', id: 'h', token: state.token, device_id: deviceId() });
    };
    ws.onmessage = (ev) => {
      if (gen !== state.gen) return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (msg && typeof msg === 'object') onMessage(msg);
    };
    ws.onerror = () => {}; // "close" follows with the details
    ws.onclose = (ev) => {
      if (gen !== state.gen) return;
      state.ws = null;
      state.live = false;
      if (state.refused) return;
      if (!state.opened) scheduleRetry('server unreachable', 'unreachable');
      else if (ev.code === 1001) scheduleRetry('server restarting', 'reconnecting');
      else scheduleRetry('connection lost', 'reconnecting');
    };
  }

  /* Waits state.backoff (then doubles it, up to 30 s) and reconnects; counts down in the status line. */
  function scheduleRetry(why, kind) {
    clearRetry();
    const delay = state.backoff;
    state.backoff = Math.min(state.backoff * 2, BACKOFF_MAX_MS);
    state.retryAt = Date.now() + delay;
    state.retryWhy = why;
    const tick = () => {
      const s = Math.max(1, Math.ceil((state.retryAt - Date.now()) / 1000));
      setStatus(kind, `${why} · reconnecting in ${s} s`);
    };
    tick();
    state.tickTimer = setInterval(tick, 250);
    state.retryTimer = setTimeout(connect, delay);
  }

  /* The connection is fine but the figures could not be read (e.g. Redis is away): ask again later. */
  function scheduleResubscribe(why) {
    clearRetry();
    const delay = state.subBackoff;
    state.subBackoff = Math.min(state.subBackoff * 2, BACKOFF_MAX_MS);
    state.retryAt = Date.now() + delay;
    const tick = () => {
      const s = Math.max(1, Math.ceil((state.retryAt - Date.now()) / 1000));
      setStatus('retrying', `${why} · retrying in ${s} s`);
    };
    tick();
    state.tickTimer = setInterval(tick, 250);
    state.retryTimer = setTimeout(() => {
      clearRetry();
      if (state.ws && state.ws.readyState === WebSocket.OPEN) subscribe();
      else connect();
    }, delay);
  }

  function refuse(msg) {
    state.refused = true;
    clearRetry();
    dropSocket();
    const text = `token refused: ${msg.message || msg.code}`;
    setStatus('refused', text);
    showError(text);
    sessionStorage.removeItem(TOKEN_KEY);
    showSignin(true);
  }

  function subscribe() {
    state.subId = `s${++state.nextId}`;
    const msg = { type: 'stats.subscribe', id: state.subId };
    if (state.wantWeek) msg.week = state.wantWeek;
    send(msg);
  }

  function onMessage(msg) {
    if (msg.type === 'welcome' && msg.re === 'h') {
      state.backoff = BACKOFF_MIN_MS; // the server is back: the next drop starts at 1 s again
      if (typeof msg.week === 'string') state.currentWeek = msg.week;
      subscribe();
      return;
    }
    if (msg.type === 'error') {
      onError(msg);
      return;
    }
    if (msg.type === 'stats.subscribe' && msg.re === state.subId && msg.stats) {
      clearRetry();
      state.live = true;
      state.backoff = BACKOFF_MIN_MS;
      state.subBackoff = BACKOFF_MIN_MS;
      if (!state.accepted) {
        state.accepted = true;
        sessionStorage.setItem(TOKEN_KEY, state.token);
        $('token-input').value = '';
        showError('');
        showSignin(false);
        $('sign-out').hidden = false;
      }
      state.expectWeek = msg.stats.week;
      showNotice('');
      setStatus('live', 'live');
      render(msg.stats);
      return;
    }
    if (msg.type === 'stats' && msg.re === undefined && msg.stats) {
      const w = msg.stats.week;
      // Only the week on screen; when following the current week, a newer
      // week (the week rolled over) is followed too.
      if (w === state.expectWeek || (state.wantWeek === null && state.expectWeek && w > state.expectWeek)) {
        state.expectWeek = w;
        render(msg.stats);
      }
    }
  }

  function onError(msg) {
    if (msg.re === 'h') {
      if (REFUSED_CODES.has(msg.code)) refuse(msg);
      else {
        // e.g. unavailable: the server closes; retry with backoff
        dropSocket();
        scheduleRetry(`server error: ${msg.message || msg.code}`, 'reconnecting');
      }
      return;
    }
    if (msg.re !== undefined && msg.re === state.subId) {
      if (REFUSED_CODES.has(msg.code)) {
        refuse(msg);
      } else if (msg.field === 'week' && state.wantWeek) {
        showNotice(`No figures for ${state.wantWeek}: ${msg.message || msg.code}. Showing the current week.`);
        state.wantWeek = null;
        subscribe();
      } else if (msg.retryable || msg.code === 'unavailable' || msg.code === 'rate_limited') {
        state.live = false;
        scheduleResubscribe(`figures unavailable: ${msg.message || msg.code}`);
      } else {
        dropSocket();
        scheduleRetry(`server error: ${msg.message || msg.code}`, 'error');
      }
      return;
    }
    if (msg.code === 'rate_limited') return; // nothing sent here is urgent
    showNotice(`server says: ${msg.message || msg.code}`);
  }

  /* ---------------------------------------------------------------- */
  /* week picker                                                       */

  function setWeek(week) {
    if (week && state.currentWeek && week >= state.currentWeek) week = null;
    state.wantWeek = week || null;
    updateWeekControls(state.wantWeek || state.currentWeek || (state.stats && state.stats.week));
    if (state.live) subscribe();
  }

  function updateWeekControls(shown) {
    const input = $('week-input');
    if (shown) input.value = shown;
    if (state.currentWeek) input.max = state.currentWeek;
    const atCurrent = state.wantWeek === null || (state.currentWeek && shown >= state.currentWeek);
    $('week-next').disabled = !!atCurrent;
    $('week-current').disabled = !!atCurrent;
  }

  function shownWeek() {
    return state.wantWeek || (state.stats && state.stats.week) || state.currentWeek;
  }

  /* ---------------------------------------------------------------- */
  /* rendering                                                         */

  function render(stats) {
    state.stats = stats;
    $('dashboard').hidden = false;
    const k = isNum(stats.k) ? stats.k : 5;
    $('k').textContent = String(k);
    $('k-footer').textContent = String(k);

    // the week
    if (state.wantWeek === null && stats.week) state.currentWeek = state.currentWeek && state.currentWeek > stats.week ? state.currentWeek : stats.week;
    updateWeekControls(stats.week);
    const current = stats.week === state.currentWeek;
    $('week-label').textContent = `${stats.week || ''} · ${weekSpan(stats.week)}${current ? ' (this week)' : ''}`;
    const gen = Date.parse(stats.generated_at || '');
    $('generated-at').textContent = Number.isNaN(gen) ? '' : `figures of ${timeFmt.format(gen)}`;

    const wf = stats.week_figures || {};
    const all = wf.all || {};
    setFig($('active-members'), all.active_members);
    setFig($('aerobic-met'), all.aerobic_met);
    setFig($('guideline-met'), all.guideline_met);
    setFig($('activities'), all.activities);
    setFig($('equivalent-min'), all.equivalent_min);
    const att = shareText(all.aerobic_met, all.active_members);
    $('attainment').textContent = att === 'suppressed' || att === '–' ? att : `${att} of active members`;
    const gs = shareText(all.guideline_met, all.active_members);
    $('guideline-share').textContent = gs === 'suppressed' || gs === '–' ? gs : `${gs} of active members`;
    $('minutes-split').textContent =
      isNum(all.moderate_min) && isNum(all.vigorous_min)
        ? `${nf.format(all.moderate_min)} moderate · ${nf.format(all.vigorous_min)} vigorous`
        : '';

    // right now
    const today = stats.today || {};
    setFig($('today-active'), today.active_members);
    $('today-date').textContent = today.date ? `on ${dateText(today.date)}` : '';
    const upm = Array.isArray(today.uploads_per_minute) ? today.uploads_per_minute : [];
    const last = upm.length ? upm[upm.length - 1].uploads : undefined;
    setFig($('uploads-last-minute'), last);
    const hour = upm.reduce((a, b) => a + (isNum(b.uploads) ? b.uploads : 0), 0);
    $('uploads-last-hour').textContent = upm.length ? `${nf.format(hour)} in the last hour` : '';
    setFig($('connected-devices'), stats.connected_devices);
    const t = stats.totals || {};
    setFig($('total-members'), t.members);
    setFig($('total-activities'), t.activities);
    setFig($('total-events'), t.events);
    setFig($('total-participations'), t.participations);
    setFig($('total-laps'), t.laps);

    const districts = Array.isArray(wf.by_district) ? wf.by_district : [];
    const ages = Array.isArray(wf.by_age_band) ? wf.by_age_band : [];
    const genders = Array.isArray(wf.by_gender) ? wf.by_gender : [];
    fillFigures($('district-table'), districts, (d) => ({ key: `district-${d.district}`, name: d.en || d.district, zh: d.zh }));
    fillFigures($('age-table'), ages, (a) => ({ key: `age-${a.age_band}`, name: a.age_band }));
    fillFigures($('gender-table'), genders, (g) => ({ key: `gender-${g.gender}`, name: g.gender }));
    fillEvents(Array.isArray(stats.events) ? stats.events : []);
    renderCharts(stats, districts, ages, upm);
  }

  function cell(tag, text, testid, cls) {
    const el = document.createElement(tag);
    el.textContent = text;
    if (testid) el.dataset.testid = testid;
    if (cls) el.className = cls;
    return el;
  }

  /* Rows of name | active | meeting target | share, each cell with a stable data-testid. */
  function fillFigures(table, rows, describe) {
    const body = table.tBodies[0];
    body.replaceChildren();
    for (const r of rows) {
      const d = describe(r);
      const tr = document.createElement('tr');
      tr.dataset.testid = d.key;
      const th = cell('th', d.name);
      th.scope = 'row';
      if (d.zh) {
        th.append(cell('span', d.zh, null, 'zh'));
        th.lang = 'en';
        th.lastChild.lang = 'zh-Hant';
      }
      tr.append(th);
      for (const [suffix, v] of [
        ['active', r.active_members],
        ['met', r.aerobic_met],
      ]) {
        const td = cell('td', '', `${d.key}-${suffix}`);
        setFig(td, v);
        tr.append(td);
      }
      const s = shareText(r.aerobic_met, r.active_members);
      const td = cell('td', s, `${d.key}-share`);
      td.classList.toggle('suppressed', s === 'suppressed');
      tr.append(td);
      body.append(tr);
    }
  }

  const KIND = { timed_relay: 'timed relay', virtual: 'virtual challenge' };

  function fillEvents(events) {
    const body = $('events-table').tBodies[0];
    body.replaceChildren();
    $('events-empty').hidden = events.length > 0;
    for (const e of events) {
      const tr = document.createElement('tr');
      tr.dataset.testid = `event-${e.event}`;
      const name = cell('td', e.name || e.event);
      if (e.event) name.title = e.event;
      tr.append(name);
      tr.append(cell('td', KIND[e.kind] || e.kind || '', null, 'kind'));
      const st = document.createElement('td');
      st.append(cell('span', e.state || '', null, `pill ${String(e.state || '').replace(/[^a-z0-9_-]/gi, '')}`));
      tr.append(st);
      for (const [suffix, v] of [
        ['teams', e.teams],
        ['participants', e.participants],
        ['laps', e.laps],
      ]) {
        const td = cell('td', '', `event-${e.event}-${suffix}`);
        setFig(td, v);
        tr.append(td);
      }
      body.append(tr);
    }
  }

  /* ---------------------------------------------------------------- */
  /* charts (Chart.js 4, from /dashboard/vendor/chart.umd.js)          */

  const C = { accent: '#0f766e', accent2: '#b45309', muted: '#5b6b7a', grid: '#e5e9ee', upl: '#64748b' };

  function makeCharts() {
    if (typeof window.Chart !== 'function') {
      showNotice('The charting library did not load (/dashboard/vendor/chart.umd.js): figures are in the tables.');
      return null;
    }
    const Chart = window.Chart;
    const reduce = window.matchMedia && window.matchMedia('(prefers-reduced-motion: reduce)').matches;
    Chart.defaults.font.family = getComputedStyle(document.documentElement).fontFamily;
    Chart.defaults.color = C.muted;
    Chart.defaults.borderColor = C.grid;
    Chart.defaults.animation = reduce ? false : { duration: 300 };
    Chart.defaults.maintainAspectRatio = false;
    Chart.defaults.responsive = true;

    const pctAxis = { min: 0, max: 100, ticks: { callback: (v) => `${v}%` } };
    const shareTooltip = (rows, title) => ({
      callbacks: {
        title: (items) => title(rows()[items[0].dataIndex]),
        label: (item) => shareLine(rows()[item.dataIndex]),
      },
    });

    const district = new Chart($('chart-district'), {
      type: 'bar',
      data: { labels: [], datasets: [{ label: 'meeting the aerobic target', data: [], backgroundColor: C.accent, borderRadius: 3 }] },
      options: {
        indexAxis: 'y',
        scales: { x: pctAxis, y: { grid: { display: false }, ticks: { autoSkip: false } } },
        plugins: {
          legend: { display: false },
          tooltip: shareTooltip(
            () => state.chartRows.districts,
            (d) => (d ? `${d.en || d.district}  ${d.zh || ''}`.trim() : '')
          ),
        },
      },
    });
    const age = new Chart($('chart-age'), {
      type: 'bar',
      data: { labels: [], datasets: [{ label: 'meeting the aerobic target', data: [], backgroundColor: C.accent, borderRadius: 3 }] },
      options: {
        scales: { y: pctAxis, x: { grid: { display: false } } },
        plugins: {
          legend: { display: false },
          tooltip: shareTooltip(
            () => state.chartRows.ages,
            (a) => (a ? `age ${a.age_band}` : '')
          ),
        },
      },
    });
    const trend = new Chart($('chart-trend'), {
      type: 'line',
      data: {
        labels: [],
        datasets: [
          { label: 'active members', data: [], borderColor: C.accent, backgroundColor: C.accent, tension: 0.25, spanGaps: false },
          { label: 'meeting the aerobic target', data: [], borderColor: C.accent2, backgroundColor: C.accent2, tension: 0.25, spanGaps: false },
        ],
      },
      options: {
        interaction: { mode: 'index', intersect: false },
        scales: { y: { beginAtZero: true, ticks: { precision: 0 } }, x: { grid: { display: false } } },
        plugins: {
          legend: { position: 'bottom', labels: { boxWidth: 12 } },
          tooltip: {
            callbacks: {
              title: (items) => {
                const w = state.chartRows.trend[items[0].dataIndex];
                return w ? `${w.week} (${weekSpan(w.week)})` : '';
              },
              footer: (items) => {
                const w = state.chartRows.trend[items[0].dataIndex];
                return w ? `share meeting the target: ${shareText(w.aerobic_met, w.active_members)}` : '';
              },
            },
          },
        },
      },
    });
    const uploads = new Chart($('chart-uploads'), {
      type: 'bar',
      data: { labels: [], datasets: [{ label: 'uploads', data: [], backgroundColor: C.upl }] },
      options: {
        scales: {
          y: { beginAtZero: true, ticks: { precision: 0 } },
          x: { grid: { display: false }, ticks: { maxTicksLimit: 7, maxRotation: 0 } },
        },
        plugins: { legend: { display: false } },
      },
    });
    return { district, age, trend, uploads };
  }

  function shareLine(r) {
    if (!r) return '';
    if (isSuppressed(r.active_members) || isSuppressed(r.aerobic_met)) return `suppressed: ${kText()}`;
    const s = share(r.aerobic_met, r.active_members);
    if (s === null) return 'no active members';
    return `${nf.format(r.aerobic_met)} of ${nf.format(r.active_members)} active members (${pf.format(s)})`;
  }

  /* Percent 0..100 for a bar, or null (no bar) when suppressed or empty. */
  function pctOf(r) {
    const s = share(r.aerobic_met, r.active_members);
    return s === null ? null : Math.round(s * 1000) / 10;
  }
  const supLabel = (name, r) => (isSuppressed(r.active_members) ? `${name} (${r.active_members})` : name);

  function renderCharts(stats, districts, ages, upm) {
    state.chartRows = { districts, ages, trend: Array.isArray(stats.trend) ? stats.trend : [] };
    if (!state.charts) state.charts = makeCharts();
    const ch = state.charts;
    if (!ch) return;

    ch.district.data.labels = districts.map((d) => supLabel(d.en || d.district, d));
    ch.district.data.datasets[0].data = districts.map(pctOf);
    ch.district.update();

    ch.age.data.labels = ages.map((a) => supLabel(a.age_band, a));
    ch.age.data.datasets[0].data = ages.map(pctOf);
    ch.age.update();

    const trend = state.chartRows.trend;
    const num = (v) => (isNum(v) ? v : null);
    ch.trend.data.labels = trend.map((w) => (isSuppressed(w.active_members) ? `${shortWeek(w.week)} (${w.active_members})` : shortWeek(w.week)));
    ch.trend.data.datasets[0].data = trend.map((w) => num(w.active_members));
    ch.trend.data.datasets[1].data = trend.map((w) => num(w.aerobic_met));
    ch.trend.update();

    ch.uploads.data.labels = upm.map((u) => {
      const t = Date.parse(u.minute);
      return Number.isNaN(t) ? '' : hmFmt.format(t);
    });
    ch.uploads.data.datasets[0].data = upm.map((u) => num(u.uploads));
    ch.uploads.update();
  }

  const shortWeek = (w) => String(w || '').replace(/^\d{4}-/, '');

  /* ---------------------------------------------------------------- */
  /* CSV export of the week shown (GET /api/v1/stats.csv, staff token)  */

  async function downloadCsv() {
    const week = shownWeek();
    if (!state.token || !week) return;
    const btn = $('download-csv');
    btn.disabled = true;
    try {
      const res = await fetch(`/api/v1/stats.csv?week=${encodeURIComponent(week)}`, {
        headers: { Authorization: `Bearer ${state.token}` },
        cache: 'no-store',
      });
      if (!res.ok) {
        let why = `HTTP ${res.status}`;
        try {
          const body = await res.json();
          why = body.message || body.error || why;
        } catch {
          /* not JSON */
        }
        showNotice(`CSV export failed: ${why}`);
        return;
      }
      const url = URL.createObjectURL(await res.blob());
      const a = document.createElement('a');
      a.href = url;
      a.download = `fitsync-stats-${week}.csv`;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (e) {
      showNotice(`CSV export failed: ${e.message}`);
    } finally {
      btn.disabled = false;
    }
  }

  /* ---------------------------------------------------------------- */
  /* wiring                                                            */

  state.chartRows = { districts: [], ages: [], trend: [] };

  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    let tok = $('token-input').value.trim();
    tok = tok.replace(/^bearer\s+/i, '');
    if (!tok) {
      showError('Enter a staff token.');
      return;
    }
    showError('');
    state.token = tok;
    state.refused = false;
    state.accepted = false;
    state.backoff = BACKOFF_MIN_MS;
    connect();
  });

  $('sign-out').addEventListener('click', () => {
    clearRetry();
    dropSocket();
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    // a fresh page: no figure of this session stays on screen
    location.reload();
  });

  $('reconnect-now').addEventListener('click', () => connect());
  $('download-csv').addEventListener('click', downloadCsv);
  window.addEventListener('online', () => {
    if (state.retryTimer) connect();
  });

  $('week-prev').addEventListener('click', () => {
    const w = shownWeek();
    if (w) setWeek(addWeeks(w, -1));
  });
  $('week-next').addEventListener('click', () => {
    const w = shownWeek();
    if (w) setWeek(addWeeks(w, 1));
  });
  $('week-current').addEventListener('click', () => setWeek(null));
  $('week-input').addEventListener('change', (ev) => {
    const v = ev.target.value;
    if (/^\d{4}-W\d{2}$/.test(v)) setWeek(v);
  });

  // start: a token kept in this tab connects at once
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) {
    state.token = saved;
    state.accepted = true;
    showSignin(false);
    $('sign-out').hidden = false;
    connect();
  } else {
    showSignin(true);
  }
})();
