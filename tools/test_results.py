#!/usr/bin/env python3
#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#    WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#    License for the specific language governing permissions and limitations
#    under the License.

"""Collect the subunit results of each tox environment and count them.

``save --env NAME`` stores the last stestr run as .test-results/NAME.subunit
(tox's py3 env), ``show --env NAME`` counts a stream already there (the
functional tests' results come from the test bed), ``fail --env NAME
--reason TEXT`` records one failed test carrying the reason a run produced
no results; each prints ``NAME: N passed, N failed, N skipped``.
``summary`` reads every stream there and prints one line per environment,
then each failed test with the end of its traceback (a long run's log is
often read from its tail, where the runner's own report has scrolled
away) and, last, the totals as ``N passed, N failed, N skipped``: the line
CI reads (stestr's own summary is not a format CI recognises). Skips are
counted apart from passes: a skipped test never counts as passed.
"""

import argparse
import pathlib
import subprocess
import sys

import subunit
import testtools

RESULTS = pathlib.Path(__file__).resolve().parent.parent / '.test-results'


#: subunit statuses that count as passed
PASSED = ('success', 'xfail')
#: lines of a failed test's traceback that ``summary`` prints
TRACEBACK_LINES = 12


def count(path, failures=None):
    """Return {passed, failed, skipped} for one subunit v2 stream.

    ``failures``, a list, gets (test id, the end of its traceback) for
    each test that did not pass.
    """
    outcome = {}
    why = {}

    def on_test(test):
        # ``subunit.run discover`` first lists every test as 'exists'; a
        # listed test that never reports an outcome (the guest died
        # mid-run) counts as failed.
        if test['status'] != 'exists' or test['id'] not in outcome:
            outcome[test['id']] = test['status']
        for name in ('traceback', 'reason'):
            if name in test['details']:
                why[test['id']] = test['details'][name].as_text()

    result = testtools.StreamToDict(on_test)
    with open(path, 'rb') as stream:
        case = subunit.ByteStreamToStreamResult(stream,
                                                non_subunit_name='stdout')
        result.startTestRun()
        case.run(result)
        result.stopTestRun()
    statuses = list(outcome.values())
    if failures is not None:
        for test_id, status in outcome.items():
            if status not in PASSED and status != 'skip':
                lines = why.get(test_id, 'no outcome reported (%s)'
                                % status).rstrip().splitlines()
                failures.append((test_id, lines[-TRACEBACK_LINES:]))
    passed = sum(s in PASSED for s in statuses)
    skipped = statuses.count('skip')
    # Everything else (fail, uxsuccess, never finished) fails.
    return {'passed': passed, 'skipped': skipped,
            'failed': len(statuses) - passed - skipped}


def line(counts):
    return (f'{counts["passed"]} passed, {counts["failed"]} failed, '
            f'{counts["skipped"]} skipped')


def show(env):
    """Print ``env``'s line; 1 when a test failed or none passed."""
    path = RESULTS / f'{env}.subunit'
    if not path.exists():
        print(f'{env}: no test results')
        return 1
    c = count(path)
    print(f'{env}: {line(c)}')
    return 1 if c['failed'] or not c['passed'] else 0


def save(env):
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f'{env}.subunit'
    with open(out, 'wb') as f:
        last = subprocess.run([sys.executable, '-m', 'stestr', 'last',
                               '--subunit'], stdout=f)
    if last.returncode:
        # stestr has no run to report (the tests could not be loaded):
        # tox already failed; leave no stream that would count as a run.
        out.unlink()
    return show(env)


def fail(env, reason):
    """Replace ``env``'s results by one failed test that says why."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f'{env}.subunit'
    test_id = f'tests.{env}.no_results'
    with open(path, 'wb') as f:
        out = subunit.StreamResultToBytes(f)
        out.status(test_id=test_id, test_status='inprogress')
        out.status(test_id=test_id, test_status='fail', file_name='reason',
                   file_bytes=reason.encode(), mime_type='text/plain',
                   eof=True)
    return show(env)


def summary():
    total = {'passed': 0, 'failed': 0, 'skipped': 0}
    failures = []
    for path in sorted(RESULTS.glob('*.subunit')):
        c = count(path, failures)
        for k in total:
            total[k] += c[k]
        print(f'{path.stem}: {line(c)}')
    for test_id, lines in failures:
        print(f'FAILED {test_id}:')
        for text in lines:
            print(f'    {text}')
    print(line(total))
    return 1 if total['failed'] or not total['passed'] else 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='cmd', required=True)
    for name in ('save', 'show', 'fail'):
        p = sub.add_parser(name)
        p.add_argument('--env', required=True)
    sub.choices['fail'].add_argument('--reason', required=True)
    sub.add_parser('summary')
    args = parser.parse_args(argv)
    if args.cmd == 'summary':
        return summary()
    if args.cmd == 'fail':
        return fail(args.env, args.reason)
    return {'save': save, 'show': show}[args.cmd](args.env)


if __name__ == '__main__':
    sys.exit(main())
