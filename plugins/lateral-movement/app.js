// lateral-movement: a riposte rule in JavaScript.
//
// For a logon-session Malop (MalopLogonSession) of lateral movement or credential theft that an
// analyst has not closed:
// - comment with the affected users, so the analyst sees whose credentials are in play;
// - isolate the source machine: the machine the session came from. Lateral movement lands
//   processes (psexesvc.exe, wmiprvse.exe, ...) on the machines it reaches, so the source is
//   the Malop's one machine that hosts no suspect. When that is not exactly one machine, or the
//   source is offline or already isolated, nothing is isolated and the rule says why.
//
// The source is told from the suspects' machines and its state from the sensors, so a Malop the
// host could not read those parts of (`malop.unreadable`: no investigation rights, a failed
// query) is left alone, with a log line saying which: the host offers it again once they can be
// read, and the rule acts then, once. An isolation that ends without effect (failed on the
// server) fails the invocation with the receipt's detail; one the host's policy or an operator
// refuses is logged and the invocation still succeeds.
//
// Config (all optional):
// - `isolate` (bool, default true): isolate the source machine.
// - `comment` (bool, default true): add the comment.
// - `activity-types` (comma-separated, default LATERAL_MOVEMENT, CREDENTIAL_THEFT).
//
// Grants it needs: `add-comment`, `isolate`.

import {
  Info, Rule, bookkeeping, config, exportRule, info, isolation, warn,
} from 'riposte-guest';

export const ACTIVITIES = ['LATERAL_MOVEMENT', 'CREDENTIAL_THEFT'];

/** The source machine of `malop`, or a reason why there is none to isolate. Pure. */
export function sourceMachine(malop) {
  if (malop.suspects.length === 0) {
    return { reason: 'the Malop names no suspect, so its source cannot be told from its targets' };
  }
  const candidates = malop.machines.filter((m) => malop.suspectsOn(m.guid).length === 0);
  if (candidates.length !== 1) {
    return { reason: `${candidates.length} machines host no suspect; the source is not certain` };
  }
  const [source] = candidates;
  if (!source.connected) return { machine: source, reason: `source ${source.name} is offline` };
  if (source.isolated) return { machine: source, reason: `source ${source.name} is already isolated` };
  return { machine: source };
}

/** The parts of a Malop this rule decides on: without them it waits. */
export const NEEDED_PARTS = ['suspects', 'sensors'];

/** What to do for `malop` under `options`: `{ comment, isolate, notes }`. Pure. */
export function plan(malop, options) {
  const wanted = options.activityTypes.some((a) => malop.hasActivity(a));
  if (!malop.isLogonSession() || !wanted || malop.isClosed()) {
    return { comment: undefined, isolate: undefined, notes: ['not a live logon-session Malop of interest'] };
  }
  const missing = NEEDED_PARTS.filter((part) => malop.lacks(part));
  if (missing.length > 0) {
    const note = `${missing.join(' and ')} not readable yet; waiting until the host offers the Malop again`;
    return { comment: undefined, isolate: undefined, notes: [note] };
  }
  const users = malop.userNames();
  const source = sourceMachine(malop);
  const notes = source.reason ? [source.reason] : [];
  const isolate = options.isolate && !source.reason ? source.machine : undefined;
  const from = source.machine ? ` from ${source.machine.name}` : '';
  const comment = options.comment
    ? `[lateral-movement] ${malop.activityTypes.join(', ')}${from}; affected users: ${users.join(', ') || 'none named'}`
      + (isolate ? `; isolating ${isolate.name}` : '')
    : undefined;
  return { comment, isolate, notes };
}

/** The operator's options. */
export function options() {
  return {
    isolate: config.flag('isolate', true),
    comment: config.flag('comment', true),
    activityTypes: config.list('activity-types').length ? config.list('activity-types') : ACTIVITIES,
  };
}

class LateralMovement extends Rule {
  describe() {
    return new Info('lateral-movement', '0.1.0')
      .description('Comments with the affected users and isolates the source machine of lateral movement (JavaScript)')
      .elementKinds(['logon-session'])
      .activityTypes(ACTIVITIES);
  }

  onMalop(malop) {
    const todo = plan(malop, options());
    for (const note of todo.notes) info(`${malop.id}: ${note}`);
    if (todo.comment) bookkeeping.addComment(malop.id, todo.comment);
    if (todo.isolate) {
      try {
        const receipt = isolation.isolate(malop.id, [todo.isolate.guid], 'lateral movement: isolate the source machine');
        info(`${malop.id}: isolation of ${todo.isolate.name}: ${receipt.intoResult()}`);
      } catch (e) {
        if (!e.isPolicy) throw e;
        warn(`${malop.id}: isolation of ${todo.isolate.name} refused: ${e.message}`);
      }
    }
  }
}

export const { describe, onMalop, onInterval } = exportRule(LateralMovement);
