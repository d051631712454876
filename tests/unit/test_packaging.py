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

"""The installed wheel plugs into nova's driver loader.

tox installs nova-vdpa from a wheel it builds (``package = wheel``) into the
same virtualenv as nova 34.0.0: exactly the deployment layout. These tests
look at that installation from a separate, isolated interpreter (``-I``:
neither the checkout nor PYTHONPATH on sys.path), the way nova-compute would.
"""

import json
import os
import subprocess
import sys
import textwrap

from tests.unit import base


PROBE = textwrap.dedent('''
    import json
    from importlib import metadata
    from oslo_utils import importutils
    dist = metadata.distribution('nova-vdpa')
    files = sorted(str(f) for f in dist.files or [])
    import nova
    # nova's loader: importutils.import_object('nova.virt.' + driver).
    mod = importutils.import_module('nova.virt.' + 'nova_vdpa')
    print(json.dumps({
        'files': files,
        'nova_version': metadata.version('nova'),
        'nova_file': nova.__file__,
        'nova_owner': [str(f) for f in metadata.distribution('nova').files
                       if str(f) == 'nova/__init__.py'],
        'module_file': mod.__file__,
        'module_installed': str(dist.locate_file(
            'nova/virt/nova_vdpa/__init__.py')),
        'direct_url': dist.read_text('direct_url.json'),
        'license': (dist.read_text('licenses/LICENSE')
                    or dist.read_text('LICENSE') or ''),
        'filters': [str(dist.locate_file(f)) for f in dist.files or []
                    if str(f).endswith(
                        'etc/nova-vdpa/rootwrap.d/nova-vdpa.filters')],
        'scripts': sorted(ep.name for ep in dist.entry_points
                          if ep.group == 'console_scripts'),
        'config_groups': [
            group.name
            for ep in metadata.entry_points(group='oslo.config.opts')
            if ep.name == 'nova_vdpa' for group, _ in ep.load()()],
    }))
''')


class TestNovaLoader(base.TestCase):

    def setUp(self):
        super().setUp()
        proc = subprocess.run([sys.executable, '-I', '-c', PROBE],
                              capture_output=True, text=True, cwd='/')
        self.assertEqual(0, proc.returncode, proc.stderr)
        self.info = json.loads(proc.stdout)

    def test_next_to_nova_34(self):
        self.assertEqual('34.0.0', self.info['nova_version'])

    def test_wheel_ships_only_the_re_export_under_nova(self):
        nova_files = [f for f in self.info['files']
                      if f.startswith('nova/')]
        self.assertIn('nova/virt/nova_vdpa/__init__.py', nova_files)
        # Shipping either would replace nova's own package on install.
        self.assertNotIn('nova/__init__.py', nova_files)
        self.assertNotIn('nova/virt/__init__.py', nova_files)
        self.assertEqual(['nova/__init__.py'], self.info['nova_owner'])
        # Installed from a wheel, not linked to the checkout (editable).
        editable = json.loads(self.info['direct_url'] or '{}').get(
            'dir_info', {}).get('editable', False)
        self.assertFalse(editable)

    def test_compute_driver_module_resolves_through_nova_loader(self):
        self.assertEqual(self.info['module_installed'],
                         self.info['module_file'])
        self.assertIn('site-packages', self.info['module_file'])

    def test_wheel_ships_the_apache_license(self):
        self.assertIn('Apache License', self.info['license'])
        self.assertIn('Version 2.0, January 2004', self.info['license'])

    def test_config_generator_sees_both_groups(self):
        # What oslo-config-generator (tox -e genconfig) reads.
        self.assertEqual(['nova_vdpa', 'nova_vdpa_privileged'],
                         self.info['config_groups'])

    def test_wheel_ships_how_the_daemon_starts(self):
        # The rootwrap filter (data file, under the environment's etc/)
        # and the command it names, both as the checkout has them.
        self.assertEqual(1, len(self.info['filters']), self.info['files'])
        with open(self.info['filters'][0]) as f:
            shipped = f.read()
        checkout = os.path.join(os.path.dirname(__file__), '..', '..', 'etc',
                                'nova-vdpa', 'rootwrap.d',
                                'nova-vdpa.filters')
        with open(checkout) as f:
            self.assertEqual(f.read(), shipped)
        self.assertIn('nova-vdpa-privsep-helper', self.info['scripts'])
