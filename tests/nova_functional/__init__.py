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

# Nova's test package chooses the concurrency mode (eventlet patching, or
# native threads when OS_NOVA_DISABLE_EVENTLET_PATCHING is set) before
# anything else is imported: nova/tests/functional/__init__.py does it from
# Nova 33 on (and 31), nova/test.py in 32. Ours import Nova's fixtures, so
# both come first here too. tox.ini's nova-functional runs native threads,
# the envs of the releases before 34 (and nova-functional-eventlet) their
# default, eventlet.
import logging

import nova.tests.functional  # noqa: F401
import nova.test  # noqa: F401,H306

# Nova's thread pools log their shutdown at INFO after a test's log capture
# has ended, straight to the worker's stdout: keep that one logger quiet.
logging.getLogger('nova.thread_pool_factory').setLevel(logging.WARNING)
