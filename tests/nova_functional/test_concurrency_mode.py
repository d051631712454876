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

"""nova-compute's concurrency mode: native threads, never eventlet.

The allocator's kernel calls keep their deadlines with native threads;
under eventlet one call stuck in the kernel would freeze every green
thread of nova-compute. LibvirtVdpaDriver refuses to start in eventlet
mode with one ERROR line naming what to set. These tests run in both
modes: tox's ``nova-functional`` env runs native threads, and
``nova-functional-eventlet`` runs this module with Nova's eventlet
patching (nova/tests/functional/__init__.py applies it when
``OS_NOVA_DISABLE_EVENTLET_PATCHING`` is not set).
"""

import logging

import fixtures
from nova import monkey_patch
from nova import utils as nova_utils

from nova_vdpa.compute import overrides
from tests.nova_functional import test_lifecycle


class ConcurrencyModeTest(test_lifecycle._LifecycleBase):

    def setUp(self):
        super().setUp()
        self.records = []
        handler = logging.Handler(logging.INFO)
        handler.emit = self.records.append
        logger = logging.getLogger('nova_vdpa')
        logger.addHandler(handler)
        self.addCleanup(logger.removeHandler, handler)

    def assertRefused(self):
        self.assertRaises(overrides.EventletMode, self.start_vdpa_compute,
                          hostname='host1')
        self.assertNotIn('host1', self.computes)
        (line,) = [r.getMessage() for r in self.records
                   if r.levelno >= logging.ERROR]
        self.assertIn('OS_NOVA_DISABLE_EVENTLET_PATCHING=1', line)
        self.assertNotIn('\n', line)

    def test_this_process_mode(self):
        # the mode this test process runs in, as tox chose it
        if nova_utils.concurrency_mode_threading():
            self.assertFalse(monkey_patch.is_patched())
            self.start_vdpa_compute(hostname='host1')
            self.assertIn('host1', self.computes)
            self._create_server(networks=[
                {'port': self._vdpa_port('port')['id']}])
            self.assertEqual(1, len(self._devices('host1')))
        else:
            self.assertTrue(monkey_patch.is_patched())
            self.assertRefused()

    def test_refused_in_eventlet_mode(self):
        # nova.monkey_patch's record of the mode, in either process
        self.useFixture(fixtures.MonkeyPatch(
            'nova.monkey_patch.MONKEY_PATCHED', True))
        self.assertRefused()
