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

"""nova-compute's concurrency mode: nova-vdpa runs in both.

tox's ``nova-functional`` env runs these tests with native threads;
``nova-functional-eventlet`` and the envs of the releases before Nova 34
run them with Nova's eventlet patching (Nova's test package applies it
when ``OS_NOVA_DISABLE_EVENTLET_PATCHING`` is not set). In both, the
allocator's kernel calls run on an OS thread (:mod:`nova_vdpa.kernel.
native`), so a call asleep in the kernel stops no green thread
(tests/unit/test_kernel_native.py, and on the real kernel
tests/functional/test_kernel_deadlines.py).
"""

import os

from nova_vdpa.kernel import native
from tests.nova_functional import test_lifecycle


class ConcurrencyModeTest(test_lifecycle._LifecycleBase):

    def test_this_process_mode(self):
        # The mode tox chose for this process.
        patched = os.environ.get('OS_NOVA_DISABLE_EVENTLET_PATCHING', '')
        self.assertEqual(patched.lower() not in ('1', 'true', 'yes'),
                         native.green())
        self.start_vdpa_compute(hostname='host1')
        self.assertIn('host1', self.computes)
        self._create_server(networks=[
            {'port': self._vdpa_port('port')['id']}])
        self.assertEqual(1, len(self._devices('host1')))
        driver = self.computes['host1'].manager.driver
        reader = driver.vif_driver.allocator._reader
        self.assertIsInstance(reader._thread, native.threading.Thread)
        self.assertTrue(reader._thread.is_alive())
