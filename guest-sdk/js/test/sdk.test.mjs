// Tests of riposte-guest (JavaScript) under Node's test runner, with the WIT imports faked
// (test/hooks.mjs). Run: `node --import ./test/register.mjs --test test/` (tests/run.sh does).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import {
  BudgetExhausted, Denied, ERROR_CLASSES, Failed, Info, Malop, NotFound, OutOfScope, QuotaExceeded,
  Receipt, RiposteError, Rule, ServerError, bookkeeping, config, domainKey, errorFromWit, exportRule,
  fileHashKey, isolation, kill, kv, malops, parseFlag, quarantine, remediation, splitList,
} from '../index.js';
import { MalopBuilder, fileItem, machine, receipt, suspect } from '../testing.js';
import { INTERFACES } from './hooks.mjs';
import { useHost, witError } from './fake-host.mjs';

const wit = (file) => readFileSync(new URL(`../../../wit/${file}`, import.meta.url), 'utf8');
const sdkFile = (file) => readFileSync(new URL(`../${file}`, import.meta.url), 'utf8');

/** The cases of `variant`/`enum` `name` in types.wit, in order. */
function witCases(keyword, name) {
  const body = wit('types.wit').split(`${keyword} ${name} {`)[1].split('\n    }')[0];
  return [...body.matchAll(/^\s+([a-z-]+)(\(string\))?,/gm)].map((m) => m[1]);
}

const ID = '11.-7780537507363356527';

/** A builder of a high-priority, unread KNOWN_MALWARE Malop. */
const malware = () => new MalopBuilder(ID)
  .displayName('evil.exe').detectionType('KNOWN_MALWARE').activityTypes(['MALICIOUS_INFECTION']).priority('high');
/** `malware()` on a connected machine 1.1 and an offline one 2.2. */
const twoMachines = () => malware()
  .machine(machine('1.1', 'DESKTOP-1')).machine(machine('2.2', 'LAPTOP-2', { connected: false }));

test('the SDK imports, and its types name, the WIT version of ../../wit', () => {
  const version = wit('world.wit').match(/^package riposte:plugin@([^;]+);/m)[1];
  for (const file of ['wit.js', 'index.d.ts']) {
    const versions = [...sdkFile(file).matchAll(/'riposte:plugin\/[a-z-]+@([^']+)'/g)].map((m) => m[1]);
    assert.ok(versions.length >= 8, file);
    assert.deepEqual(new Set(versions), new Set([version]), file);
  }
});

test('the fakes know every function of every imported interface', () => {
  const text = wit('types.wit');
  for (const [iface, functions] of Object.entries(INTERFACES)) {
    const body = text.split(`interface ${iface} {`)[1];
    assert.ok(body, `interface ${iface} is in types.wit`);
    const declared = [...body.split(/\ninterface /)[0].matchAll(/^\s+([a-z-]+): func/gm)]
      .map((m) => m[1].replace(/-([a-z])/g, (_, c) => c.toUpperCase()));
    assert.deepEqual(declared.sort(), [...functions].sort(), iface);
  }
});

test('malop helpers: connected machines, suspects by machine, users, hashes', () => {
  const m = new Malop(twoMachines()
    .activityTypes(['Ransomware'])
    .suspect(suspect('s1', 'x.exe', '1.1'))
    .suspect(suspect('s2', 'y.exe', '2.2'))
    .suspect(suspect('s3', 'z.exe', '1.1'))
    .user('u1', 'corp\\alice').user('u2', 'corp\\alice').user('u3', 'bob')
    .rootCause('x', 'File', ['ABC', 'abc', ' def '])
    .build());
  assert.ok(m.hasActivity('RANSOMWARE') && m.isRansomware() && !m.isLogonSession());
  assert.deepEqual(m.guidsOf(m.connectedMachines()), ['1.1']);
  assert.deepEqual(m.guidsOf(m.offlineMachines()), ['2.2']);
  assert.ok(m.isConnected('1.1') && !m.isConnected('2.2') && !m.isConnected('9.9'));
  assert.deepEqual(m.suspectsOn('1.1').map((s) => s.guid), ['s1', 's3']);
  assert.deepEqual([...m.suspectsByMachine()].map(([g, s]) => [g, s.length]), [['1.1', 2], ['2.2', 1]]);
  assert.deepEqual(m.userNames(), ['corp\\alice', 'bob']);
  assert.deepEqual(m.rootCauseHashes(), ['abc', 'def']);
  assert.ok(m.isComplete() && !m.lacks('suspects'));
  assert.deepEqual(kill(m.suspects[0]), { machineGuid: '1.1', targetGuid: 's1', kind: 'kill-process' });
  assert.equal(quarantine({ guid: 'f', machineGuid: '1.1' }).kind, 'quarantine-file');
  assert.deepEqual(fileHashKey(' ABC '), { kind: 'file-hash', value: 'abc' });
  assert.deepEqual(domainKey('Evil.Example.'), { kind: 'domain', value: 'evil.example' });
  assert.ok(new Malop(malware().managementStatus('false-positive').build()).isClosed());
});

test('the builder starts from a complete unread process Malop with every WIT field', () => {
  const m = new MalopBuilder('11.1').build();
  const fields = wit('types.wit').split('record malop {')[1].split('\n    }')[0];
  const declared = [...fields.matchAll(/^\s+([a-z-]+):/gm)]
    .map((x) => x[1].replace(/-([a-z])/g, (_, c) => c.toUpperCase()));
  assert.deepEqual(Object.keys(m), declared);
  assert.deepEqual([m.id, m.kind, m.managementStatus, m.priority, m.creationTime], ['11.1', 'process', 'unread', 'unknown', 0n]);
  assert.deepEqual([m.machines, m.suspects, m.files, m.users, m.unreadable], [[], [], [], [], []]);
  assert.deepEqual(machine('m1', 'a'), { guid: 'm1', name: 'a', pylumId: undefined, os: 'WINDOWS', connected: true, isolated: false });
  assert.throws(() => new MalopBuilder('11.1').unreadable(['sensor']), /unknown Malop part "sensor"/);
});

test('a partly-read Malop is built as the host offers it', () => {
  const full = twoMachines()
    .suspect(suspect('p1', 'x.exe', '1.1', { imageSha1: 'ab', autorunKeys: [['r1', 'Run\\x']] }))
    .file(fileItem('f1', 'x.exe', '2.2', { md5: 'cd', sha1: 'ef' }))
    .ipAddresses(['1.2.3.4'])
    .domains(['evil.example']);
  const m = new Malop(full.unreadable(['sensors', 'suspects']).unreadable(['files', 'network', 'suspects']).build());
  assert.deepEqual(m.unreadable, ['suspects', 'files', 'network', 'sensors']);
  assert.ok(!m.isComplete() && ['suspects', 'files', 'network', 'sensors'].every((p) => m.lacks(p)));
  assert.deepEqual(m.suspects, [suspect('p1', 'x.exe', '')]);
  assert.deepEqual(m.files, [fileItem('f1', 'x.exe', '')]);
  assert.deepEqual([m.ipAddresses, m.domains], [[], []]);
  assert.deepEqual(m.machines, [
    machine('1.1', 'DESKTOP-1', { connected: false, os: '' }),
    machine('2.2', 'LAPTOP-2', { connected: false, os: '' }),
  ]);
  const one = malware().machine(machine('1.1', 'a')).suspect(suspect('p1', 'x.exe', 'elsewhere')).unreadable(['suspects']).build();
  assert.equal(one.suspects[0].machineGuid, '1.1', 'a Malop with one machine places its suspects there');
  assert.ok(one.machines[0].connected, 'the sensors were read');
});

test('a refused host call throws the typed error, with its kind and detail', () => {
  const host = useHost({
    'isolation.isolate': () => { throw witError('budget-exhausted', 'isolations per hour: 0 left'); },
    'malops.getMalop': () => { throw witError('not-found', 'no Malop 11.1'); },
    'bookkeeping.addComment': () => undefined,
  });
  assert.throws(() => isolation.isolate('11.1', ['1.1'], 'why'), (e) => {
    assert.ok(e instanceof BudgetExhausted && e instanceof RiposteError);
    assert.equal(e.kind, 'budget-exhausted');
    assert.equal(e.detail, 'isolations per hour: 0 left');
    assert.ok(e.isPolicy);
    return true;
  });
  assert.throws(() => malops.getMalop('11.1'), (e) => e instanceof NotFound && !e.isPolicy);
  bookkeeping.addComment('11.1', 'hello');
  assert.deepEqual(host.calls.map((c) => c.name), ['isolation.isolate', 'malops.getMalop', 'bookkeeping.addComment']);
  // An optional Malop id may be left out.
  useHost({ 'isolation.isolate': (id) => receipt(`a-${id}`, 'shadowed') });
  assert.deepEqual(isolation.isolate(null, ['1.1'], 'r'), new Receipt(receipt('a-undefined', 'shadowed')));
  assert.equal(errorFromWit('plain'), 'plain');
  assert.equal(errorFromWit({ tag: 'constructor', val: 'x' }).tag, 'constructor', 'not a WIT error');
  assert.ok(errorFromWit({ tag: 'denied', val: 'x' }) instanceof Denied);
});

test('every WIT error case has its typed class; the policy ones say so', () => {
  const tags = witCases('variant', 'error');
  assert.deepEqual(Object.keys(ERROR_CLASSES), tags);
  const policy = tags.filter((tag) => {
    const typed = errorFromWit(witError(tag, 'why'));
    assert.ok(typed instanceof ERROR_CLASSES[tag] && typed instanceof RiposteError, tag);
    assert.deepEqual(typed.payload, { tag, val: 'why' });
    return typed.isPolicy;
  });
  assert.deepEqual(policy, ['denied', 'budget-exhausted', 'protected-target', 'out-of-scope', 'quota-exceeded']);
  useHost({ 'remediation.remediate': () => { throw witError('out-of-scope', 'm9 is not on 11.1'); } });
  assert.throws(() => remediation.remediate('11.1', [], 'r'), (e) => e instanceof OutOfScope && e.message === 'out-of-scope: m9 is not on 11.1');
  assert.ok(new QuotaExceeded('x').isPolicy);
});

test('receipts say where the action stands; one that ended without effect becomes a typed error', () => {
  const ended = {
    failed: [ServerError, 'action a1 failed: sensor disconnected'],
    denied: [Denied, 'action a1 was denied by an operator: sensor disconnected'],
    expired: [Denied, 'action a1 expired before approval: sensor disconnected'],
  };
  const dispositions = witCases('enum', 'disposition');
  assert.equal(dispositions.length, 12);
  for (const disposition of dispositions) {
    useHost({ 'isolation.isolate': () => receipt('a1', disposition, 'sensor disconnected') });
    const r = isolation.isolate('11.1', ['1.1'], 'why');
    assert.ok(r instanceof Receipt);
    assert.deepEqual([r.actionId, r.disposition, r.detail], ['a1', disposition, 'sensor disconnected']);
    assert.equal(`${r}`, `a1 (${disposition}): sensor disconnected`);
    assert.equal(r.endedWithoutEffect(), disposition in ended, disposition);
    if (disposition in ended) {
      const [cls, message] = ended[disposition];
      assert.throws(() => r.intoResult(), (e) => e instanceof cls && e.detail === message);
      assert.ok(r.error() instanceof cls);
    } else {
      assert.equal(r.intoResult(), r);
      assert.equal(r.error(), undefined);
    }
  }
  assert.equal(`${new Receipt(receipt('a2', 'outcome-unknown'))}`, 'a2 (outcome-unknown)');
});

test('exportRule: describe gives the WIT record; errors reach the host typed', () => {
  class Demo extends Rule {
    describe() {
      return new Info('demo', '1.2.3').description('d').activityTypes(['RANSOMWARE']).elementKinds(['process']).intervalSeconds(60);
    }
    onMalop(malop) {
      if (malop.priority === 'low') throw new Denied('not granted');
      if (malop.priority === 'medium') throw new TypeError('boom');
      bookkeeping.addComment(malop.id, `${malop.connectedMachines().length} connected`);
    }
  }
  const exports = exportRule(Demo);
  assert.deepEqual(exports.describe(), {
    name: 'demo', version: '1.2.3', description: 'd',
    subscription: { elementKinds: ['process'], activityTypes: ['RANSOMWARE'], detectionTypes: [] },
    intervalSeconds: 60,
  });
  const host = useHost();
  exports.onMalop(twoMachines().build());
  assert.deepEqual(host.actions()[0], { name: 'bookkeeping.addComment', args: [ID, '1 connected'] });
  assert.throws(() => exports.onMalop(malware().priority('low').build()), (e) => {
    assert.deepEqual(e.payload, { tag: 'denied', val: 'not granted' });
    return true;
  });
  // A plain exception becomes the rule's own `failed`, not a trap.
  assert.throws(() => exports.onMalop(malware().priority('medium').build()), (e) => {
    assert.ok(e instanceof Failed);
    assert.deepEqual(e.payload, { tag: 'failed', val: 'TypeError: boom' });
    return true;
  });
  exports.onInterval(0n);
  class NoDescribe extends Rule {}
  assert.throws(() => exportRule(NoDescribe).describe(), /does not implement describe/);
  assert.ok(new BudgetExhausted('x').isPolicy && !new Failed('x').isPolicy);
});

test('config and kv helpers', () => {
  const store = new Map();
  useHost({
    'config.get': (k) => ({ list: ' a, ,b ,', on: 'Yes', odd: 'maybe' })[k],
    'kv.get': (k) => store.get(k),
    'kv.set': (k, v) => { store.set(k, v); },
  });
  assert.deepEqual(config.list('list'), ['a', 'b']);
  assert.deepEqual(config.list('missing'), []);
  assert.equal(config.flag('on', false), true);
  assert.equal(config.flag('odd', false), false);
  assert.equal(config.flag('missing', true), true);
  assert.equal(config.getOr('missing', 'x'), 'x');
  assert.deepEqual(splitList('x,y'), ['x', 'y']);
  assert.equal(parseFlag('OFF'), false);
  kv.setString('seen', 'héllo');
  assert.ok(store.get('seen') instanceof Uint8Array);
  assert.equal(kv.getString('seen'), 'héllo');
  assert.equal(kv.getString('nothing'), undefined);
});

test("the README's rule (examples/minimal-rule.js) isolates the connected machines only, truthfully", async () => {
  const rule = await import('../examples/minimal-rule.js');
  assert.deepEqual(rule.describe().subscription.activityTypes, ['RANSOMWARE']);
  const host = useHost({ 'isolation.isolate': () => receipt('a1', 'shadowed') });
  rule.onMalop(twoMachines().build());
  assert.deepEqual(host.actions(), [{ name: 'isolation.isolate', args: [ID, ['1.1'], 'ransomware Malop'] }]);
  const idle = useHost();
  rule.onMalop(malware().machine(machine('2.2', 'b', { connected: false })).build());
  assert.deepEqual(idle.actions(), []);
  assert.match(idle.logs()[0], /no connected machine to isolate/);
  // An isolation the server reports failed fails the invocation with the reason.
  useHost({ 'isolation.isolate': () => receipt('a1', 'failed', 'sensor went away') });
  assert.throws(() => rule.onMalop(twoMachines().build()), (e) => {
    assert.deepEqual(e.payload, { tag: 'server-error', val: 'action a1 failed: sensor went away' });
    return true;
  });
});
