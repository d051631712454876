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
import warnings

# Nova 34 logs that eventlet mode is deprecated when it patches, before any
# logging is set up (so to stderr, once per test process); the eventlet
# envs run that mode on purpose.
logging.getLogger('nova.monkey_patch').setLevel(logging.ERROR)

import nova.tests.functional  # noqa: F401,E402
import nova.test  # noqa: F401,E402,H306
from nova.tests import fixtures as nova_fixtures  # noqa: E402,H306

_nova_warnings_setup = nova_fixtures.WarningsFixture.setUp


def _warnings_setup(self):
    _nova_warnings_setup(self)
    # Under eventlet, every compute service start runs `uptime` through
    # processutils with a preexec_fn (Nova's LibvirtDriver.get_host_uptime),
    # a fork, and eventlet warns at every fork: once per test that starts
    # a compute, in every release's eventlet run. Nova's, not ours.
    warnings.filterwarnings('ignore', message=r'Using fork\(\) is a bad idea',
                            category=DeprecationWarning)


# Nova's fixture sets the warning filters again in every test.
nova_fixtures.WarningsFixture.setUp = _warnings_setup

# Nova's thread pools log their shutdown at INFO after a test's log capture
# has ended, straight to the worker's stdout: keep that one logger quiet.
logging.getLogger('nova.thread_pool_factory').setLevel(logging.WARNING)
