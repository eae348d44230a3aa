// A complete rule in about 20 lines: the README's rule, in JavaScript (guest-sdk/js/test runs it).
import { Info, Rule, exportRule, info, isolation } from 'riposte-guest';

class IsolateRansomware extends Rule {
  describe() {
    return new Info('isolate-ransomware', '0.1.0')
      .description('Isolates the connected machines of ransomware Malops')
      .activityTypes(['RANSOMWARE']);
  }

  onMalop(malop) {
    const guids = malop.guidsOf(malop.connectedMachines());
    if (guids.length === 0) {
      info(`${malop.id}: no connected machine to isolate`);
      return;
    }
    isolation.isolate(malop.id, guids, 'ransomware Malop').intoResult();
  }
}

export const { describe, onMalop, onInterval } = exportRule(IsolateRansomware);
