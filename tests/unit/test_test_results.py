"""tools/test_results.py: the counts CI reads."""

import importlib.util
import os
import pathlib
import tempfile

import subunit

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
