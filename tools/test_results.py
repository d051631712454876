#!/usr/bin/env python3
"""Collect the subunit results of each tox environment and count them.

``save --env NAME`` stores the last stestr run as .test-results/NAME.subunit;
``summary`` reads every stream there and prints one line per environment
and, last, the totals as ``N passed, N failed, N skipped``: the line CI
reads (stestr's own summary is not a format CI recognises). Skips are
counted apart from passes: a skipped test never counts as passed.
"""

import argparse
import pathlib
import subprocess
import sys

import subunit
import testtools

RESULTS = pathlib.Path(__file__).resolve().parent.parent / '.test-results'


def count(path):
    """Return {passed, failed, skipped} for one subunit v2 stream."""
    outcome = {}

    def on_test(test):
        # ``subunit.run discover`` first lists every test as 'exists'; a
        # listed test that never reports an outcome (the guest died
        # mid-run) counts as failed.
        if test['status'] != 'exists' or test['id'] not in outcome:
            outcome[test['id']] = test['status']

    result = testtools.StreamToDict(on_test)
    with open(path, 'rb') as stream:
        case = subunit.ByteStreamToStreamResult(stream,
                                                non_subunit_name='stdout')
        result.startTestRun()
        case.run(result)
        result.stopTestRun()
    statuses = list(outcome.values())
    passed = sum(s in ('success', 'xfail') for s in statuses)
    skipped = statuses.count('skip')
    # Everything else (fail, uxsuccess, never finished) fails.
    return {'passed': passed, 'skipped': skipped,
            'failed': len(statuses) - passed - skipped}


def line(counts):
    return (f'{counts["passed"]} passed, {counts["failed"]} failed, '
            f'{counts["skipped"]} skipped')


def save(env):
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f'{env}.subunit'
    with open(out, 'wb') as f:
        subprocess.run([sys.executable, '-m', 'stestr', 'last', '--subunit'],
                       stdout=f, check=True)
    print(f'{env}: {line(count(out))}')
    return 0


def summary():
    total = {'passed': 0, 'failed': 0, 'skipped': 0}
    for path in sorted(RESULTS.glob('*.subunit')):
        c = count(path)
        for k in total:
            total[k] += c[k]
        print(f'{path.stem}: {line(c)}')
    print(line(total))
    return 1 if total['failed'] or not total['passed'] else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = parser.add_subparsers(dest='cmd', required=True)
    p = sub.add_parser('save')
    p.add_argument('--env', required=True)
    sub.add_parser('summary')
    args = parser.parse_args()
    return save(args.env) if args.cmd == 'save' else summary()


if __name__ == '__main__':
    sys.exit(main())
