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

"""Shared bases and helpers of the unit tests.

Every unit test derives from :class:`TestCase`, oslotest's base class, so
that ``OS_TEST_TIMEOUT`` and the ``OS_*_CAPTURE`` settings tox sets take
effect. Test modules import their bases and helpers from here, never from
one another.
"""

from lxml import etree
from nova import objects
from oslotest import base

from nova_vdpa.kernel import netlink
from tests.unit import fake_kernel


class TestCase(base.BaseTestCase):
    """oslotest's base: timeout, output and log capture from tox's env."""


class KernelTestCase(TestCase):
    """A fake kernel (a fixture), a client and a sysfs view of it."""

    #: management devices of the fake kernel (None: vdpasim_net)
    mgmtdevs: list | None = None

    def setUp(self):
        super().setUp()
        self.kernel = self.useFixture(
            fake_kernel.FakeKernel(mgmtdevs=self.mgmtdevs))
        self.client = self.kernel.client()
        self.sysfs = self.kernel.sysfs()

    def iproute2_add(self, name):
        """Create ``name`` on vdpasim_net as ``vdpa dev add`` would.

        No check of ours on the way: iproute2 sends names our creation
        rule forbids.
        """
        list(self.client._request(
            netlink.VDPA_CMD_DEV_NEW,
            [('VDPA_ATTR_DEV_NAME', name),
             ('VDPA_ATTR_MGMTDEV_DEV_NAME', 'vdpasim_net')], False,
            dict(device=name, mgmtdev='vdpasim_net', attribute='-')))


class NovaObjectsTestCase(TestCase):
    """Nova's versioned objects registered (Flavor, ImageMeta)."""

    def setUp(self):
        super().setUp()
        objects.register_all()


def xml_tree(node):
    """An element as (tag, attributes, children), order of children kept."""
    if isinstance(node, str):
        node = etree.fromstring(node)
    return (node.tag, dict(node.attrib), [xml_tree(c) for c in node])
