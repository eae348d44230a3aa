// The lateral-movement rule's decisions, natively under Node (the riposte:plugin imports are
// faked by guest-sdk/js/test/hooks.mjs): the source machine, the comment, and the calls.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Malop } from 'riposte-guest';
import { receipt } from 'riposte-guest/testing';
import { onMalop, plan, sourceMachine, describe } from '../app.js';
import { useHost, witError } from '../../../guest-sdk/js/test/fake-host.mjs';

/** A fixture (the host's JSON, snake_case) as the WIT record a JavaScript rule receives. */
function record(name) {
  const raw = JSON.parse(readFileSync(new URL(`../fixtures/${name}.json`, import.meta.url), 'utf8'));
  const camel = (v) => Array.isArray(v) ? v.map(camel)
    : v && typeof v === 'object'
      ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k.replace(/_([a-z])/g, (_, c) => c.toUpperCase()), camel(x)]))
      : v;
  const m = camel(raw);
  m.kind = m.kind === 'MalopLogonSession' ? 'logon-session' : 'process';
  m.managementStatus = { FP: 'false-positive', REOPEN: 'reopened' }[m.managementStatus] ?? m.managementStatus.toLowerCase();
  m.priority = m.priority.toLowerCase();
  m.machines = m.machines.map((x) => ({ ...x, pylumId: x.pylumId ?? undefined }));
  // The host leaves `unreadable` out of its JSON when the Malop is complete.
  m.unreadable ??= [];
  return m;
}

const OPTIONS = { isolate: true, comment: true, activityTypes: ['LATERAL_MOVEMENT', 'CREDENTIAL_THEFT'] };

test('describe subscribes to logon sessions of lateral movement and credential theft', () => {
  const info = describe();
  assert.equal(info.name, 'lateral-movement');
  assert.deepEqual(info.subscription.elementKinds, ['logon-session']);
  assert.deepEqual(info.subscription.activityTypes, ['LATERAL_MOVEMENT', 'CREDENTIAL_THEFT']);
});

test('the source is the one machine without a suspect', () => {
  const m = new Malop(record('lateral-movement-must-act'));
  assert.equal(sourceMachine(m).machine.name, 'DESKTOP-VG9KE2U');
  const todo = plan(m, OPTIONS);
  assert.equal(todo.isolate.guid, '-1845090846.1198775089551518743');
  assert.match(todo.comment, /affected users: integration\\svc_backup, integration\\jdoe; isolating DESKTOP-VG9KE2U$/);
  assert.equal(plan(m, { ...OPTIONS, isolate: false }).isolate, undefined);
});

test('an offline source, or two candidates, gets a comment and no isolation', () => {
  const offline = plan(new Malop(record('credential-theft-offline-source')), OPTIONS);
  assert.equal(offline.isolate, undefined);
  assert.deepEqual(offline.notes, ['source LAPTOP-FIN-07 is offline']);
  assert.match(offline.comment, /from LAPTOP-FIN-07; affected users: integration\\jdoe$/);
  const two = plan(new Malop(record('two-candidate-sources-comment-only')), OPTIONS);
  assert.equal(two.isolate, undefined);
  assert.match(two.notes[0], /2 machines host no suspect/);
});

test('closed, false-positive and process Malops are left alone', () => {
  for (const name of ['false-positive-must-not-act', 'process-malop-must-not-act']) {
    const todo = plan(new Malop(record(name)), OPTIONS);
    assert.equal(todo.comment, undefined, name);
    assert.equal(todo.isolate, undefined, name);
  }
});

test('a refused isolation is logged and the invocation still succeeds; other errors fail it', () => {
  const host = useHost({
    'config.get': () => undefined,
    'isolation.isolate': () => { throw witError('protected-target', 'DESKTOP-VG9KE2U is protected'); },
  });
  onMalop(record('lateral-movement-must-act'));
  assert.deepEqual(host.actions().filter((c) => c.name !== 'config.get').map((c) => c.name), ['bookkeeping.addComment', 'isolation.isolate']);
  assert.ok(host.logs().some((l) => l.includes('refused: protected-target: DESKTOP-VG9KE2U is protected')));
  useHost({
    'config.get': () => undefined,
    'isolation.isolate': () => { throw witError('server-error', 'HTTP 500'); },
  });
  assert.throws(() => onMalop(record('lateral-movement-must-act')), (e) => {
    assert.deepEqual(e.payload, { tag: 'server-error', val: 'HTTP 500' });
    return true;
  });
});

test('a Malop whose suspects or sensor state could not be read is left until it is offered complete', () => {
  for (const missing of [['suspects'], ['sensors'], ['suspects', 'sensors']]) {
    const m = { ...record('lateral-movement-must-act'), unreadable: missing };
    const todo = plan(new Malop(m), OPTIONS);
    assert.equal(todo.comment, undefined, missing);
    assert.equal(todo.isolate, undefined, missing);
    assert.deepEqual(todo.notes, [`${missing.join(' and ')} not readable yet; waiting until the host offers the Malop again`]);
    const host = useHost({ 'config.get': () => undefined });
    onMalop(m);
    assert.deepEqual(host.actions().filter((c) => c.name !== 'config.get'), [], missing);
  }
  // The parts it does not decide on do not hold it back.
  const m = { ...record('lateral-movement-must-act'), unreadable: ['files', 'network'] };
  assert.equal(plan(new Malop(m), OPTIONS).isolate.name, 'DESKTOP-VG9KE2U');
});

test("the isolation's receipt is logged; one that failed on the server fails the invocation", () => {
  const host = useHost({ 'config.get': () => undefined, 'isolation.isolate': () => receipt('a7', 'awaiting-approval') });
  onMalop(record('lateral-movement-must-act'));
  assert.ok(host.logs().some((l) => l.endsWith('isolation of DESKTOP-VG9KE2U: a7 (awaiting-approval)')), host.logs());
  const denied = useHost({ 'config.get': () => undefined, 'isolation.isolate': () => receipt('a7', 'denied', 'not this one') });
  onMalop(record('lateral-movement-must-act'));
  assert.ok(denied.logs().some((l) => l.includes('refused: denied: action a7 was denied by an operator: not this one')), denied.logs());
  useHost({ 'config.get': () => undefined, 'isolation.isolate': () => receipt('a7', 'failed', 'sensor went away') });
  assert.throws(() => onMalop(record('lateral-movement-must-act')), (e) => {
    assert.deepEqual(e.payload, { tag: 'server-error', val: 'action a7 failed: sensor went away' });
    return true;
  });
});
