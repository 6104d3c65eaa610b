/**
 * Entry of the plugin-host child process (forked by the supervisor with `--no-node-snapshot`).
 * Owns every isolate; talks to the main process only through batched IPC messages. It holds no
 * credentials: the supervisor forks it with a scrubbed environment.
 */
import { writeSync } from 'node:fs';
import type { DispatchOutcome, PluginInstanceSpec } from '../instance.ts';
import { IpcChannel, messagesOf } from './ipc-channel.ts';
import { InstanceSlot, type SwapResult } from './instance-slot.ts';
import { LAST_WORDS_FD, type FromHost, type LastWords, type ToHost } from './ipc.ts';
import { PluginSandbox, SandboxLoadFailure, type SandboxHooks } from './plugin-sandbox.ts';

const HEARTBEAT_MS = Number(process.env.QQBOT_HOST_HEARTBEAT_MS ?? 500);
const RETIRE_GRACE_MS = Number(process.env.QQBOT_HOST_RETIRE_GRACE_MS ?? 5000);

const channel = new IpcChannel<FromHost>(process);
const slots = new Map<string, InstanceSlot>();
const calls = new Map<number, { sandbox: PluginSandbox; callId: number }>();
let nextCid = 1;
let stopping = false;

function hooksFor(id: string, version: number): SandboxHooks {
  return {
    call(sandbox, callId, capability, json, eventRid) {
      const cid = nextCid++;
      calls.set(cid, { sandbox, callId });
      const message: FromHost = { op: 'call', cid, id, capability, json };
      if (eventRid !== undefined) message.eventRid = eventRid;
      channel.send(message);
    },
    log(level, args) {
      channel.send({ op: 'log', id, level, args });
    },
    pluginError(error) {
      channel.send({ op: 'plugin-error', id, version, error });
    },
    failed(sandbox) {
      slots.get(id)?.failed(sandbox);
    },
    heap(usedBytes) {
      channel.send({ op: 'heap', id, usedBytes });
    },
    catastrophic(message) {
      // V8 has lost the isolate; the process cannot go on. Name the culprit synchronously, then abort.
      const words: LastWords = { instanceId: id, message };
      try {
        writeSync(LAST_WORDS_FD, `${JSON.stringify(words)}\n`);
      } catch {
        // the supervisor falls back to the instance that was executing
      }
      process.abort();
    },
  };
}

/** The serving version died with nothing to take over: the supervisor decides about the restart. */
function lost(sandbox: PluginSandbox): void {
  const { id, version } = sandbox.spec;
  const slot = slots.get(id);
  if (slot?.current === sandbox) slots.delete(id);
  const failure = sandbox.failure ?? { reason: 'disposed' as const, message: 'isolate disposed' };
  channel.send({ op: 'failed', id, version, reason: failure.reason, message: failure.message });
}

async function load(rid: number, spec: PluginInstanceSpec): Promise<void> {
  const started = performance.now();
  let sandbox: PluginSandbox;
  try {
    sandbox = await PluginSandbox.create(spec, hooksFor(spec.id, spec.version));
  } catch (err) {
    const failure = err instanceof SandboxLoadFailure ? err : undefined;
    const message: FromHost = { op: 'loaded', rid, ok: false, message: err instanceof Error ? err.message : String(err) };
    if (failure?.location) message.location = failure.location;
    if (failure) message.stack = failure.mappedStack;
    channel.send(message);
    return;
  }
  // Sent in the tick the version goes live, so a 'failed' for it can never arrive first.
  const announce = (result: SwapResult): void => {
    if (result.live) channel.send({ op: 'loaded', rid, ok: true, version: spec.version, loadMs: performance.now() - started });
    else channel.send({ op: 'loaded', rid, ok: false, message: result.reason });
  };
  const existing = slots.get(spec.id);
  if (existing) {
    existing.swap(sandbox, announce);
  } else if (sandbox.disposed) {
    const f = sandbox.failure;
    announce({ live: false, reason: `failed right after setup: ${f ? `${f.reason}: ${f.message}` : 'disposed'}` });
  } else {
    slots.set(spec.id, new InstanceSlot(sandbox, answer, lost, RETIRE_GRACE_MS));
    announce({ live: true });
  }
}

function answer(rid: number, outcome: DispatchOutcome): void {
  channel.send({ op: 'outcome', rid, outcome });
}

async function unload(id: string, graceMs: number): Promise<void> {
  const slot = slots.get(id);
  if (!slot) return;
  slots.delete(id);
  await slot.unload(graceMs);
}

/** Results that came in one batch go into each sandbox in one entry. */
function settle(results: ReadonlyArray<Extract<ToHost, { op: 'result' }>>): void {
  const bySandbox = new Map<PluginSandbox, Array<{ callId: number; ok: boolean; json: string }>>();
  for (const { cid, ok, json } of results) {
    const call = calls.get(cid);
    if (!call) continue;
    calls.delete(cid);
    const list = bySandbox.get(call.sandbox);
    if (list) list.push({ callId: call.callId, ok, json });
    else bySandbox.set(call.sandbox, [{ callId: call.callId, ok, json }]);
  }
  for (const [sandbox, list] of bySandbox) sandbox.settle(list);
}

process.on('message', (raw: unknown) => {
  // Event JSON is defined once per batch and referenced by that batch's deliveries.
  let events: Map<number, { json: string; type: string }> | undefined;
  const results: Array<Extract<ToHost, { op: 'result' }>> = [];
  for (const message of messagesOf<ToHost>(raw)) {
    switch (message.op) {
      case 'event':
        (events ??= new Map()).set(message.eid, { json: message.json, type: message.type });
        break;
      case 'deliver': {
        const event = events?.get(message.eid);
        const slot = slots.get(message.id);
        if (slot && event && !stopping) slot.dispatch(message.rid, event.json, event.type);
        // no slot (the instance is restarting): it never entered, the main process keeps it
        else answer(message.rid, { instanceId: message.id, version: 0, status: 'unloaded', reason: 'unloaded', error: 'E_UNLOADED', requeue: true });
        break;
      }
      case 'result':
        results.push(message);
        break;
      case 'load':
        if (!stopping) void load(message.rid, message.spec);
        break;
      case 'unload':
        void unload(message.id, RETIRE_GRACE_MS).then(() => channel.send({ op: 'unloaded', rid: message.rid }));
        break;
      case 'stop':
        stopping = true;
        void Promise.all([...slots.keys()].map((id) => unload(id, message.graceMs))).then(() => {
          channel.send({ op: 'stopped', rid: message.rid });
          channel.flush();
          clearInterval(heartbeat);
          process.disconnect?.();
        });
        break;
    }
  }
  if (results.length > 0) settle(results);
});

// The main process going away (or closing the channel) ends the host: isolates die with it.
process.on('disconnect', () => {
  clearInterval(heartbeat);
  for (const slot of slots.values()) slot.current.dispose();
  process.exit(0);
});

// Sent directly, not batched: a heartbeat says this thread is free right now.
const heartbeat = setInterval(() => {
  if (process.connected) process.send?.([{ op: 'heartbeat' } satisfies FromHost]);
}, HEARTBEAT_MS);
channel.send({ op: 'ready' });
