'use strict';
// The checkers' shared reporter: one "ok"/"not ok" line per check and a
// closing "N passed, N failed" line; the exit code is 1 when any failed.

class Report {
  constructor(prefix) {
    this.prefix = prefix;
    this.passed = 0;
    this.failed = 0;
  }

  // cond true: passed. `why` says what was found when it is not.
  check(cond, what, why) {
    if (cond) {
      this.passed++;
      console.log(`ok - ${this.prefix}: ${what}`);
    } else {
      this.failed++;
      console.log(`not ok - ${this.prefix}: ${what}${why ? ` (${why})` : ''}`);
    }
    return !!cond;
  }

  // Runs fn; an exception is a failed check carrying its message.
  attempt(what, fn) {
    try {
      const r = fn();
      return this.check(r === undefined ? true : r, what);
    } catch (e) {
      return this.check(false, what, e.message.split('\n').slice(0, 6).join('; '));
    }
  }

  finish() {
    console.log(`${this.prefix}: ${this.passed} passed, ${this.failed} failed`);
    process.exitCode = this.failed ? 1 : 0;
  }
}

module.exports = { Report };
