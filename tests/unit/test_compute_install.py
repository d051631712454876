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

"""Where the shim must be for Nova's loader.

The layouts are what pip produced for each kind of install (recorded in
:mod:`nova_vdpa.compute.install`); the one this test process runs in is
read for real: tox installed the wheel next to Nova 34.0.0.
"""

import os

from nova_vdpa.compute import install
from tests.unit import base

SITE = '/opt/nova/lib/python3.11/site-packages'
USER = '/root/.local/lib/python3.11/site-packages'
GOOD = install.Layout(SITE + '/nova/virt',
                      SITE + '/nova/virt/nova_vdpa/__init__.py',
                      SITE + '/nova_vdpa/__init__.py')


class TestLayouts(base.TestCase):

    def test_beside_nova(self):
        self.assertIsNone(install.problem(GOOD))
        self.assertIsNone(install.mixed(GOOD))
        install.check(GOOD)

    def refused(self, layout):
        ex = self.assertRaises(install.UnsupportedInstall, install.check,
                               layout)
        self.assertNotIn('\n', str(ex))
        self.assertIn('without --user, --prefix or -e', str(ex))
        return str(ex)

    def test_user_or_prefix_install_not_importable(self):
        msg = self.refused(install.Layout(
            SITE + '/nova/virt', None, USER + '/nova_vdpa/__init__.py'))
        self.assertIn(
            'nova.virt.nova_vdpa is not importable: there is no '
            '%s/nova/virt/nova_vdpa/__init__.py beside Nova\'s nova/virt '
            '(nova_vdpa itself is in %s)' % (SITE, USER), msg)

    def test_editable_not_importable(self):
        msg = self.refused(install.Layout(
            SITE + '/nova/virt', None, '/src/nova-vdpa/nova_vdpa/__init__.py'))
        self.assertIn('nova_vdpa itself is in /src/nova-vdpa)', msg)

    def test_shim_found_elsewhere(self):
        msg = self.refused(install.Layout(
            SITE + '/nova/virt', '/src/nova-vdpa/nova/virt/nova_vdpa/'
            '__init__.py', SITE + '/nova_vdpa/__init__.py'))
        self.assertIn('resolves to /src/nova-vdpa/nova/virt/nova_vdpa/'
                      '__init__.py, not to %s/nova/virt/nova_vdpa/'
                      '__init__.py' % SITE, msg)

    def test_no_nova(self):
        msg = self.refused(install.Layout(None, None,
                                          SITE + '/nova_vdpa/__init__.py'))
        self.assertIn('this Python has no Nova', msg)

    def test_package_from_elsewhere_is_mixed(self):
        layout = install.Layout(GOOD.nova_virt, GOOD.shim,
                                USER + '/nova_vdpa/__init__.py')
        self.assertIsNone(install.problem(layout))
        self.assertEqual('the nova_vdpa package in use is in %s, not in '
                         'Nova\'s %s' % (USER, SITE), install.mixed(layout))


class TestThisPython(base.TestCase):

    def test_tox_installed_the_shim_beside_nova(self):
        found = install.layout()
        self.assertIsNone(install.problem(found))
        self.assertEqual(os.path.join(found.nova_virt, 'nova_vdpa',
                                      '__init__.py'), found.shim)
