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

# nova/tests/functional/__init__.py chooses the concurrency mode (eventlet
# patching or native threads) before anything else is imported: ours import
# nova's fixtures, so it must come first here too. tox.ini selects native
# threads (OS_NOVA_DISABLE_EVENTLET_PATCHING=1), Nova's recommended mode and
# the one our allocator's deadlines need.
import logging

import nova.tests.functional  # noqa: F401

# Nova's thread pools log their shutdown at INFO after a test's log capture
# has ended, straight to the worker's stdout: keep that one logger quiet.
logging.getLogger('nova.thread_pool_factory').setLevel(logging.WARNING)
