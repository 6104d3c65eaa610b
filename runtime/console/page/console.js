// The qqbot console page: no framework, no build. State arrives over Server-Sent Events
// (/api/stream); the chat pane posts to /api/chat. Tokens travel as a Bearer header on fetch and
// as ?token= where the browser cannot set headers (EventSource).

const token = new URLSearchParams(location.search).get('token');
const tokenQuery = token ? `?token=${encodeURIComponent(token)}` : '';
const authHeaders = token ? { authorization: `Bearer ${token}` } : {};

const $ = (id) => document.getElementById(id);
const LOG_LIMIT = 300;
const KIND_LABELS = { guild_at: 'guild @', guild: 'guild', direct: 'DM', group_at: 'group @', c2c: 'C2C' };

const chatMessages = new Map(); // n → ChatMessage
let lastChatN = 0;
let lastBotsHtml = '';
let simulatorBots = '';
let logPaused = false;
let logPending = [];
let needHistory = false;

function esc(value) {
  return String(value).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
}

function fmtMs(ms) {
  if (ms === undefined || ms === null) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
}

function fmtBytes(n) {
  if (!n) return '—';
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function fmtUptime(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

function fmtTime(at) {
  return new Date(at).toLocaleTimeString([], { hour12: false });
}

// ── bots, shards, plugins ────────────────────────────────────────────────────────────────

function shardRow(bot, s) {
  const cls = s.state === 'ready' ? 'ok' : s.state === 'failed' || s.state === 'stopped' ? 'bad' : 'warn';
  return `<tr data-bot="${esc(bot.name)}" data-shard="${esc(s.id)}" data-state="${esc(s.state)}">
    <td>${esc(s.id)} <span class="dim">/ ${esc(s.count)}</span></td>
    <td><span class="badge ${cls}">${esc(s.state)}</span></td>
    <td class="num">${fmtMs(s.latencyMs)}</td>
    <td class="num">${esc(s.seq)}</td>
    <td class="num${s.reconnects > 0 ? ' warn-text' : ''}">${esc(s.reconnects)}</td>
  </tr>`;
}

// Redis sessions: every process of the bot (read from Redis), the shards each holds, and Redis itself.
function clusterSection(bot) {
  const c = bot.cluster;
  if (!c) return '';
  const redis = c.redis.up
    ? `<span class="badge ok" data-redis="up">redis up</span>`
    : `<span class="badge bad" data-redis="down">redis down${c.redis.downSince ? ` for ${esc(fmtUptime(Date.now() - c.redis.downSince))}` : ''}</span>`;
  const rows = c.processes.map((p) => `<tr data-bot="${esc(bot.name)}" data-process="${esc(p.id)}"${p.self ? ' data-self' : ''}>
      <td><span class="name">${esc(p.id)}</span>${p.self ? ' <span class="badge ok">this process</span>' : ''}${p.stale ? ' <span class="badge warn" title="heartbeat expired: its shards free up when their leases do">not renewing</span>' : ''}</td>
      <td>${esc(p.host)}${p.pid ? ` <span class="dim">pid ${esc(p.pid)}</span>` : ''}</td>
      <td class="num">${esc(p.shards.length)}</td>
      <td>${p.shards.length ? esc(p.shards.join(', ')) : '<span class="dim">none</span>'}</td>
    </tr>`).join('');
  const unowned = c.unowned.length ? `<p class="warn-text" data-unowned>Not held by any process: shard ${esc(c.unowned.join(', '))}</p>` : '';
  return `<h3>Processes</h3>
    <p class="cluster-meta">${redis} <span class="dim">${esc(c.redis.url)} · ${esc(c.redis.outages)} outage${c.redis.outages === 1 ? '' : 's'}</span></p>
    <div class="table-wrap"><table class="grid processes"><thead><tr><th>Process</th><th>Host</th><th class="num">Shards</th><th>Shard ids (of ${esc(c.shardCount)})</th></tr></thead>
    <tbody>${rows}</tbody></table></div>${unowned}`;
}

// Gateway/worker roles: the bot's event Stream in Redis, its lag and dead letters, pending entries per worker.
function streamSection(bot) {
  const st = bot.stream;
  if (!st) return '';
  const redis = st.redisUp ? '<span class="badge ok">redis up</span>' : '<span class="badge bad">redis down</span>';
  const n = (v) => (v === undefined || v === null ? '–' : esc(v));
  const rows = st.consumers.map((c) => `<tr data-bot="${esc(bot.name)}" data-consumer="${esc(c.name)}">
      <td><span class="name">${esc(c.name)}</span></td>
      <td class="num">${esc(c.pending)}</td>
      <td class="num">${fmtMs(c.idleMs)}</td>
    </tr>`).join('');
  return `<h3>Stream <span class="dim">(role ${esc(bot.role)})</span></h3>
    <p class="cluster-meta" data-stream="${esc(st.key)}">${redis} <span class="dim">${esc(st.key)} · group ${esc(st.group)}</span>
      · length <span data-stream-length>${n(st.length)}</span> · lag <span data-stream-lag>${n(st.lag)}</span> · pending <span data-stream-pending>${n(st.pending)}</span>
      · <span class="${st.dead > 0 ? 'bad-text' : ''}" data-stream-dead>${n(st.dead)} dead</span></p>
    ${rows ? `<div class="table-wrap"><table class="grid consumers"><thead><tr><th>Worker</th><th class="num">Pending</th><th class="num">Idle</th></tr></thead><tbody>${rows}</tbody></table></div>` : '<p class="empty">No worker has joined the group yet.</p>'}`;
}

function pluginRow(bot, p) {
  const bad = p.status === 'quarantined' || p.status === 'failed';
  const lost = Object.values(p.dropped || {}).some((n) => n > 0) || Object.values(p.sendFailures || {}).some((n) => n > 0);
  const failing = bad || p.status === 'restarting' || p.errors > 0 || lost || Boolean(p.pending);
  const rowCls = bad ? 'row-bad' : failing ? 'row-warn' : '';
  const badge = p.status === 'running' ? 'ok' : bad ? 'bad' : 'warn';
  const err = p.lastError ? `<div class="last-error" title="${esc(p.lastError)}">${esc(p.lastError)}</div>` : '';
  // an npm plugin asking for more than the operator granted runs without it until approved
  const pending = p.pending ? `<div class="pending-grant">awaiting approval: ${esc(p.pending.join(', '))} — run <code>${esc(p.approve)}</code></div>` : '';
  const source = p.source === 'npm' ? ' <span class="source">npm</span>' : '';
  return `<tr class="${rowCls}" data-bot="${esc(bot.name)}" data-plugin="${esc(p.name)}" data-status="${esc(p.status)}"${p.pending ? ' data-pending="true"' : ''}>
    <td><span class="name">${esc(p.name)}</span>${source}${err}${pending}</td>
    <td class="num">v${esc(p.version)}</td>
    <td><span class="badge ${badge}">${esc(p.status)}</span></td>
    <td class="num">${esc(p.events)}</td>
    <td class="num${p.errors > 0 ? ' bad-text' : ''}">${esc(p.errors)}</td>
    <td class="num">${fmtMs(p.cpuMs)}</td>
    <td class="num">${fmtBytes(p.heapUsedBytes)}</td>
    <td class="num${p.restarts > 0 ? ' warn-text' : ''}">${esc(p.restarts)}</td>
    <td class="num" title="${esc(fmtBytes(p.queuedBytes))}">${esc(p.queued)}</td>
    ${lossCell(p.dropped, 'data-dropped')}
    ${lossCell(p.sendFailures, 'data-send-failures')}
  </tr>`;
}

/** A total with its breakdown by reason in the tooltip: never silent about what was lost. */
function lossCell(byReason, attr) {
  const entries = Object.entries(byReason || {});
  const total = entries.reduce((sum, [, n]) => sum + n, 0);
  const title = entries.map(([reason, n]) => `${reason}: ${n}`).join('\n');
  return `<td class="num${total > 0 ? ' bad-text' : ''}" ${attr}="${total}" title="${esc(title)}">${esc(total)}</td>`;
}

function botCard(bot) {
  const stateCls = bot.state === 'running' ? 'ok' : bot.state === 'failed' ? 'bad' : 'warn';
  const ready = bot.shards.filter((s) => s.state === 'ready').length;
  const shards = bot.shards.length
    ? `<div class="table-wrap"><table class="grid shards"><thead><tr><th>Shard</th><th>State</th><th class="num">Latency</th><th class="num">Seq</th><th class="num">Reconnects</th></tr></thead>
       <tbody>${bot.shards.map((s) => shardRow(bot, s)).join('')}</tbody></table></div>`
    : `<p class="empty">${bot.role === 'worker' ? 'A worker: the gateway process holds the shards, events come from the Stream.' : bot.transport === 'webhook' ? 'Events arrive by webhook: no shards.' : 'No shards yet.'}</p>`;
  const plugins = bot.plugins.length
    ? `<div class="table-wrap"><table class="grid plugins"><thead><tr><th>Plugin</th><th class="num">Version</th><th>Status</th><th class="num">Events</th><th class="num">Errors</th><th class="num">CPU</th><th class="num">Heap</th><th class="num">Restarts</th><th class="num">Queued</th><th class="num" title="events the plugin did not handle">Dropped</th><th class="num" title="replies that did not go out">Unsent</th></tr></thead>
       <tbody>${bot.plugins.map((p) => pluginRow(bot, p)).join('')}</tbody></table></div>`
    : '<p class="empty">No plugins enabled.</p>';
  return `<article class="bot card" data-bot="${esc(bot.name)}" data-state="${esc(bot.state)}">
    <header class="bot-head">
      <h2>${esc(bot.name)}</h2>
      <span class="badge ${stateCls}">${esc(bot.state)}</span>
      <span class="meta">app ${esc(bot.appId)}${bot.role && bot.role !== 'all' ? ` · ${esc(bot.role)}` : ''} · ${esc(bot.transport)}${bot.simulator ? ' · simulator' : ''}${bot.shards.length ? ` · ${ready}/${bot.shards.length} shards ready` : ''}${bot.cluster ? ` · redis sessions, ${bot.cluster.processes.length} process${bot.cluster.processes.length === 1 ? '' : 'es'}` : ''}</span>
    </header>
    ${bot.error ? `<p class="bot-error">${esc(bot.error)}</p>` : ''}
    ${bot.intents.length ? `<p class="intents">${bot.intents.map((i) => `<code>${esc(i)}</code>`).join(' ')}</p>` : ''}
    <h3>Shards${bot.cluster ? ' <span class="dim">(held by this process)</span>' : ''}</h3>
    ${shards}
    ${clusterSection(bot)}
    ${streamSection(bot)}
    <h3>Plugins</h3>
    ${plugins}
  </article>`;
}

function renderState(snap) {
  const bots = snap.bots;
  const html = bots.length ? bots.map(botCard).join('') : '<p class="empty">No bots configured.</p>';
  // Rebuild only on change, so text stays selectable between updates.
  if (html !== lastBotsHtml) {
    $('bots').innerHTML = html;
    lastBotsHtml = html;
  }
  const shards = bots.flatMap((b) => b.shards);
  const ready = shards.filter((s) => s.state === 'ready').length;
  const failing = bots.flatMap((b) => b.plugins).filter((p) => p.status !== 'running').length;
  const pending = bots.flatMap((b) => b.plugins).filter((p) => p.pending).length;
  $('summary').textContent = [
    `v${snap.version}`,
    `up ${fmtUptime(Date.now() - snap.startedAt)}`,
    `${bots.length} bot${bots.length === 1 ? '' : 's'}`,
    shards.length ? `${ready}/${shards.length} shards ready` : null,
    failing ? `${failing} plugin${failing === 1 ? '' : 's'} not running` : null,
    pending ? `${pending} permission request${pending === 1 ? '' : 's'} awaiting approval` : null,
  ].filter(Boolean).join(' · ');
  renderChatBots(bots.filter((b) => b.simulator).map((b) => b.name));
  if (needHistory && !$('chat').hidden) {
    needHistory = false;
    loadChatHistory().catch(() => { needHistory = true; });
  }
}

// ── chat ─────────────────────────────────────────────────────────────────────────────────

function renderChatBots(names) {
  const key = names.join('\n');
  if (key === simulatorBots) return;
  simulatorBots = key;
  const select = $('chat-bot');
  const current = select.value;
  select.innerHTML = names.map((n) => `<option value="${esc(n)}">${esc(n)}</option>`).join('');
  if (names.includes(current)) select.value = current;
  $('chat').hidden = names.length === 0;
  renderChatList();
}

function chatItem(m) {
  const li = document.createElement('li');
  li.dataset.from = m.from;
  li.dataset.n = String(m.n);
  li.dataset.kind = m.kind;
  const bubble = document.createElement('div');
  bubble.className = 'bubble';
  bubble.textContent = m.content;
  const meta = document.createElement('div');
  meta.className = 'meta';
  meta.textContent = `${m.from === 'bot' ? m.bot : 'you'} · ${KIND_LABELS[m.kind] ?? m.kind} · ${fmtTime(m.at)}`;
  li.append(bubble, meta);
  return li;
}

function renderChatList() {
  const bot = $('chat-bot').value;
  const list = $('chat-messages');
  const items = [...chatMessages.values()].filter((m) => m.bot === bot).sort((a, b) => a.n - b.n);
  list.replaceChildren(...items.map(chatItem));
  if (!items.length) {
    const empty = document.createElement('li');
    empty.className = 'empty';
    empty.textContent = 'Say something: your messages and the bot’s replies appear here.';
    list.append(empty);
  }
  list.scrollTop = list.scrollHeight;
}

function addChat(m) {
  if (chatMessages.has(m.n)) return;
  chatMessages.set(m.n, m);
  lastChatN = Math.max(lastChatN, m.n);
  if (m.bot !== $('chat-bot').value) return;
  const list = $('chat-messages');
  list.querySelector('li.empty')?.remove();
  const last = list.lastElementChild;
  if (last && Number(last.dataset.n) > m.n) return renderChatList(); // arrived out of order
  list.append(chatItem(m));
  list.scrollTop = list.scrollHeight;
}

async function loadChatHistory() {
  const sep = tokenQuery ? '&' : '?';
  const res = await fetch(`/api/chat${tokenQuery}${sep}since=${lastChatN}`, { headers: authHeaders });
  if (!res.ok) return;
  const { messages } = await res.json();
  for (const m of messages) addChat(m);
}

function showChatError(text) {
  const el = $('chat-error');
  el.textContent = text ?? '';
  el.hidden = !text;
}

async function sendChat(event) {
  event.preventDefault();
  const input = $('chat-input');
  const content = input.value;
  if (!content.trim()) return;
  const button = $('chat-send');
  button.disabled = true;
  try {
    const res = await fetch('/api/chat', {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...authHeaders },
      body: JSON.stringify({ bot: $('chat-bot').value, kind: $('chat-kind').value, content }),
    });
    if (!res.ok) {
      const body = await res.json().catch(() => null);
      showChatError(body?.error?.message ?? `sending failed (HTTP ${res.status})`);
      return;
    }
    showChatError(null);
    input.value = '';
  } catch {
    showChatError('sending failed: the runtime is not reachable');
  } finally {
    button.disabled = false;
    input.focus();
  }
}

// ── live log ─────────────────────────────────────────────────────────────────────────────

function logItem(e) {
  const li = document.createElement('li');
  li.dataset.kind = e.kind;
  const time = document.createElement('time');
  time.textContent = fmtTime(e.at);
  const kind = document.createElement('span');
  kind.className = 'kind';
  kind.textContent = e.kind;
  const text = document.createElement('span');
  text.className = 'text';
  text.textContent = e.bot ? `${e.bot}: ${e.text}` : e.text;
  li.append(time, kind, text);
  return li;
}

function addLive(entry) {
  if (logPaused) {
    logPending.push(entry);
    if (logPending.length > LOG_LIMIT) logPending.shift();
    return;
  }
  const log = $('live-log');
  log.prepend(logItem(entry));
  while (log.childElementCount > LOG_LIMIT) log.lastElementChild.remove();
}

function toggleLogPause() {
  logPaused = !logPaused;
  $('log-pause').textContent = logPaused ? 'Resume' : 'Pause';
  $('log-pause').classList.toggle('active', logPaused);
  if (!logPaused) {
    const pending = logPending;
    logPending = [];
    for (const e of pending) addLive(e);
  }
}

// ── connection ───────────────────────────────────────────────────────────────────────────

function setConn(state, text) {
  const el = $('conn');
  el.dataset.state = state;
  el.textContent = text;
}

function connect() {
  const source = new EventSource(`/api/stream${tokenQuery}`);
  source.addEventListener('state', (e) => renderState(JSON.parse(e.data)));
  source.addEventListener('live', (e) => addLive(JSON.parse(e.data)));
  source.addEventListener('chat', (e) => addChat(JSON.parse(e.data)));
  source.addEventListener('open', () => {
    setConn('live', 'live');
    // The stream starts with a state frame; once it shows the chat pane, fetch what the chat missed.
    needHistory = true;
  });
  source.addEventListener('error', () => {
    if (source.readyState === EventSource.CLOSED) {
      setConn('down', token ? 'disconnected (check the token)' : 'disconnected');
      setTimeout(connect, 3000);
    } else {
      setConn('connecting', 'reconnecting…');
    }
  });
}

$('chat-form').addEventListener('submit', sendChat);
$('chat-bot').addEventListener('change', renderChatList);
$('log-pause').addEventListener('click', toggleLogPause);
$('log-clear').addEventListener('click', () => {
  $('live-log').replaceChildren();
  logPending = [];
});
connect();
