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

"""tools/test_results.py: the counts CI reads."""

import contextlib
import importlib.util
import io
import os
import pathlib
import tempfile

import fixtures
import subunit
import testtools

from tests.unit import base

_PATH = (pathlib.Path(__file__).resolve().parents[2] / 'tools'
         / 'test_results.py')
_spec = importlib.util.spec_from_file_location('test_results', _PATH)
test_results = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_results)


class TestCount(base.TestCase):

    def stream(self, events):
        fd, path = tempfile.mkstemp(suffix='.subunit')
        self.addCleanup(os.unlink, path)
        with os.fdopen(fd, 'wb') as f:
            out = subunit.StreamResultToBytes(f)
            for test_id, status in events:
                out.status(test_id=test_id, test_status=status)
        return path

    def test_listing_is_not_an_outcome(self):
        # subunit.run discover lists each test as 'exists' first.
        path = self.stream([('a', 'exists'), ('b', 'exists'),
                            ('a', 'inprogress'), ('a', 'success'),
                            ('b', 'inprogress'), ('b', 'skip')])
        self.assertEqual({'passed': 1, 'failed': 0, 'skipped': 1},
                         test_results.count(path))

    def test_listed_but_never_finished_fails(self):
        path = self.stream([('a', 'exists'), ('b', 'exists'),
                            ('a', 'inprogress'), ('a', 'success'),
                            ('b', 'inprogress')])
        self.assertEqual({'passed': 1, 'failed': 1, 'skipped': 0},
                         test_results.count(path))

    def test_failures_and_unexpected_successes_fail(self):
        path = self.stream([('a', 'fail'), ('b', 'uxsuccess'),
                            ('c', 'xfail')])
        self.assertEqual({'passed': 1, 'failed': 2, 'skipped': 0},
                         test_results.count(path))


class TestStreams(base.TestCase):

    def setUp(self):
        super().setUp()
        self.results = pathlib.Path(self.useFixture(fixtures.TempDir()).path)
        self.useFixture(fixtures.MockPatchObject(test_results, 'RESULTS',
                                                 self.results))

    def run_main(self, *argv):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            rc = test_results.main(list(argv))
        return rc, out.getvalue()

    def test_fail_records_one_failed_test_with_the_reason(self):
        (self.results / 'functional.subunit').write_bytes(b'old')
        rc, out = self.run_main('fail', '--env', 'functional',
                                '--reason', 'the bed did not boot')
        self.assertEqual(1, rc)
        self.assertEqual('functional: 0 passed, 1 failed, 0 skipped\n', out)
        reasons = []
        result = testtools.StreamToDict(
            lambda t: reasons.append(t['details']['reason'].as_text()))
        with open(self.results / 'functional.subunit', 'rb') as f:
            result.startTestRun()
            subunit.ByteStreamToStreamResult(f).run(result)
            result.stopTestRun()
        self.assertEqual(['the bed did not boot'], reasons)

    def test_show_counts_and_fails_without_results(self):
        rc, out = self.run_main('show', '--env', 'functional')
        self.assertEqual((1, 'functional: no test results\n'), (rc, out))
        with open(self.results / 'functional.subunit', 'wb') as f:
            stream = subunit.StreamResultToBytes(f)
            stream.status(test_id='a', test_status='success')
            stream.status(test_id='b', test_status='skip')
        rc, out = self.run_main('show', '--env', 'functional')
        self.assertEqual((0, 'functional: 1 passed, 0 failed, 1 skipped\n'),
                         (rc, out))

    def test_summary_ends_with_each_failure_then_the_totals(self):
        tb = ''.join('  line %d\n' % i for i in range(30))
        tb += 'AssertionError: 20 != 19\n'
        with open(self.results / 'functional.subunit', 'wb') as f:
            stream = subunit.StreamResultToBytes(f)
            stream.status(test_id='a', test_status='success')
            stream.status(test_id='b', test_status='fail',
                          file_name='traceback', file_bytes=tb.encode(),
                          mime_type='text/x-traceback; charset=utf8',
                          eof=True)
            stream.status(test_id='c', test_status='inprogress')
        rc, out = self.run_main('summary')
        self.assertEqual(1, rc)
        lines = out.splitlines()
        self.assertEqual('functional: 1 passed, 2 failed, 0 skipped',
                         lines[0])
        self.assertEqual('FAILED b:', lines[1])
        # The end of the traceback, the assertion last.
        self.assertEqual(['      line %d' % i for i in range(19, 30)]
                         + ['    AssertionError: 20 != 19'], lines[2:14])
        self.assertEqual(['FAILED c:', '    no outcome reported (inprogress)',
                          '1 passed, 2 failed, 0 skipped'], lines[14:])

    def test_summary_of_a_green_run_lists_no_failure(self):
        with open(self.results / 'py3.subunit', 'wb') as f:
            subunit.StreamResultToBytes(f).status(test_id='a',
                                                  test_status='success')
        self.assertEqual((0, 'py3: 1 passed, 0 failed, 0 skipped\n'
                             '1 passed, 0 failed, 0 skipped\n'),
                         self.run_main('summary'))
