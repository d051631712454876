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

"""Pure parts of tools/bench_migration_traffic.py and the iPXE console."""

import importlib.util
import os
import pathlib

import fixtures

from tests.functional import ipxe_guest
from tests.unit import base

_PATH = (pathlib.Path(__file__).resolve().parents[2] / 'tools'
         / 'bench_migration_traffic.py')
_spec = importlib.util.spec_from_file_location('bench_mig', _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)

CONSOLE = (
    '64 bytes from 10.40.0.2: seq=1\r\n'
    '0 bytes from <none>: seq=2: Connection timed out (...)\r\n'
    '64 bytes from 10.40.0.2: seq=3\r\n'
    '64 bytes from 10.40.0.2: seq=4')


class TestConsole(base.TestCase):

    def test_complete_lines_never_cut_a_line(self):
        text = ipxe_guest.complete_lines(CONSOLE)
        self.assertTrue(text.endswith('seq=3\r\n'))
        # The cut-off "seq=4" is neither answered nor lost yet.
        self.assertEqual([1, 3], ipxe_guest.replies(text, '10.40.0.2'))
        self.assertEqual([2], ipxe_guest.lost(text, '10.40.0.2'))
        self.assertEqual('', ipxe_guest.complete_lines('64 bytes'))

    def test_rounds_end_and_idle(self):
        script = ipxe_guest.script('10.40.0.2', loop=True, rounds=3)
        self.assertEqual(3, script.count('ping --count %d --timeout 200 '
                                         '10.40.0.2 ||' % ipxe_guest.ROUND))
        self.assertEqual(3, script.count('ifstat net0'))
        self.assertTrue(script.endswith('echo %s\nshell\n' % ipxe_guest.END))
        self.assertNotIn('goto', script)
        # The ARP of the first ping, with time to spare, before the rounds.
        warm_up, _, rest = script.partition(ipxe_guest.PHASE_1)
        self.assertIn('ping --count 1 --timeout 3000 10.40.0.2 ||', warm_up)
        self.assertNotIn('--count 1 ', rest)
        self.assertEqual('\nrest', ipxe_guest.from_phase_1(
            'boot\n%s\nrest' % ipxe_guest.PHASE_1))
        forever = ipxe_guest.script('10.0.2.15', loop=True,
                                    ping_target='10.0.2.2')
        self.assertIn('ping --count 25 --timeout 200 10.0.2.2 ||', forever)
        self.assertTrue(forever.endswith('goto again\n'))


class TestReplyClock(base.TestCase):

    def test_reply_lines_are_timed_lost_ones_not(self):
        path = os.path.join(self.useFixture(fixtures.TempDir()).path, 's')
        with open(path, 'w') as f:
            f.write(CONSOLE)
        clock = bench.ReplyClock(path, '10.40.0.2', poll=0.01)
        clock.start()
        while not clock.times:
            clock.stopped.wait(0.01)
        clock.stopped.set()
        clock.join()
        # seq 1 and 3; seq 2 was lost, seq 4's line is not complete
        self.assertEqual(2, len(clock.times))

    def test_gaps_across_and_outside_the_migration(self):
        clock = bench.ReplyClock('/nonexistent', '10.40.0.2', poll=1)
        clock.times = [0.0, 0.2, 0.4, 0.6, 1.8, 2.0, 2.2]
        # The migration call ran from 0.5 to 1.9: the longest gap across
        # it is 0.6 -> 1.8; the usual interval outside it 0.2.
        gap, usual = clock.gaps(0.5, 1.9)
        self.assertAlmostEqual(1.2, gap)
        self.assertAlmostEqual(0.2, usual)
        self.assertEqual((None, None), bench.ReplyClock(
            '/nonexistent', 'x', 1).gaps(0, 1))
