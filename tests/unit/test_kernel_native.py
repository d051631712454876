# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""OS threads for kernel calls in both of nova-compute's concurrency modes.

This process runs native threads; eventlet mode is shown in a process of
its own, patched before it imports nova_vdpa (tests/green_probe.py), with
the fake kernel here and the real one in
tests/functional/test_kernel_deadlines.py.
"""

import json
import os
import subprocess
import sys
import threading

from testtools import content

from nova_vdpa.kernel import native
from tests.unit import base

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def run_probe(*args):
    """tests/green_probe.py's findings, as a dict."""
    done = subprocess.run(
        [sys.executable, '-m', 'tests.green_probe', '--fake', *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PYTHONPATH=ROOT, PYTHONWARNINGS='ignore'))
    if done.returncode != 0:
        raise AssertionError('the probe failed: %s' % done.stderr)
    return json.loads(done.stdout.splitlines()[-1]), done.stderr


class TestNativeThreads(base.TestCase):

    def test_unpatched_process_gets_the_standard_modules(self):
        self.assertFalse(native.green())
        self.assertIs(threading.Thread, native.threading.Thread)

    def test_wait(self):
        event = native.threading.Event()
        self.assertFalse(native.wait(event, 0.01))
        event.set()
        self.assertTrue(native.wait(event, 0))
        self.assertTrue(native.wait(event, None))


class TestEventletMode(base.TestCase):

    def test_a_call_stuck_in_the_kernel_stops_no_green_thread(self):
        found, stderr = run_probe()
        self.addDetail('probe', content.text_content(json.dumps(found)))
        self.assertTrue(found['green'])
        first, second = found['first'], found['second']
        self.assertEqual('VdpaKernelTimeout', first['outcome'])
        # The other green thread ran while the call waited in the kernel.
        self.assertGreater(first['ticks'], 0)
        # The next call fails at once, the process's stuck call named.
        self.assertEqual('VdpaKernelTimeout', second['outcome'])
        self.assertIn('missed its 1.0 s deadline', stderr)
        # Once the holder lets go, the worker answers again.
        self.assertTrue(found['not stuck'])
        self.assertEqual('returned', found['after']['outcome'])

    def test_the_probe_sees_a_frozen_hub(self):
        # What the ticks show when the caller waits as plain threading
        # would: no other green thread runs.
        found, _ = run_probe('--native-wait')
        self.assertEqual('VdpaKernelTimeout', found['first']['outcome'])
        self.assertEqual(0, found['first']['ticks'])
