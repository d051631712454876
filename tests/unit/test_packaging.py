"""The installed wheel plugs into nova's driver loader.

tox installs nova-vdpa from a wheel it builds (``package = wheel``) into the
same virtualenv as nova 34.0.0: exactly the deployment layout. These tests
look at that installation from a separate, isolated interpreter (``-I``:
neither the checkout nor PYTHONPATH on sys.path), the way nova-compute would.
"""

import json
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
