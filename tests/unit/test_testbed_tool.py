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

"""Pure parts of tools/testbed.py (the bed itself is proven functionally)."""

import importlib.util
import io
import json
import os
import pathlib
import sys
import textwrap

import fixtures

from tests.unit import base

_PATH = pathlib.Path(__file__).resolve().parents[2] / 'tools' / 'testbed.py'
_spec = importlib.util.spec_from_file_location('testbed', _PATH)
testbed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(testbed)


class TestTestbedTool(base.TestCase):

    def test_kernel_package_set_for_a_debian_version(self):
        abi, pkgs = testbed.kernel_packages('6.12.117-1~deb12u1')
        self.assertEqual('6.12.117+deb12', abi)
        self.assertEqual({
            'image': 'linux-image-6.12.117+deb12-amd64',
            'headers': 'linux-headers-6.12.117+deb12-amd64',
            'common': 'linux-headers-6.12.117+deb12-common',
            'kbuild': 'linux-kbuild-6.12.117+deb12',
            'source': 'linux-source-6.12',
        }, pkgs)

    def test_unknown_service_is_refused(self):
        e = self.assertRaises(testbed.BedError, testbed._services,
                              'libvirt,dpdk')
        self.assertIn('dpdk', str(e))
        self.assertEqual(['libvirt', 'ovs'], testbed._services('libvirt,ovs'))

    def test_virtio_vdpa_loads_before_vhost_vdpa(self):
        mods = testbed.GUEST_MODULES
        self.assertLess(mods.index('virtio_vdpa'), mods.index('vhost_vdpa'))

    def test_vdpa_sim_loads_with_physical_addresses_first(self):
        # Hardware-like by default; test_datapath reloads it for VA mode.
        mods = testbed.GUEST_MODULES
        self.assertIn('vdpa_sim:use_va=0', mods)
        self.assertLess(mods.index('vdpa_sim:use_va=0'),
                        mods.index('vdpa_sim_net'))

    def _qemu_opts(self, argv):
        opts = [a for a in argv if a.startswith('--qemu-opts=')]
        self.assertEqual(1, len(opts))
        return opts[0].split('=', 1)[1].split()

    def test_checkout_under_a_guest_tmpfs_is_refused(self):
        e = self.assertRaises(testbed.BedError, testbed.check_visible,
                              {'kvm': False}, '/var/tmp/ci.x/nova-vdpa')
        self.assertIn('/var/tmp', str(e))
        self.assertIn('clone the repository elsewhere', str(e))
        # seen at its own path, or mounted in a root of its own: fine
        testbed.check_visible({'kvm': False}, '/tmp/ci.x/nova-vdpa')
        testbed.check_visible({'kvm': False}, '/var/tmpx/nova-vdpa')
        testbed.check_visible({'root': '/r'}, '/var/tmp/ci.x/nova-vdpa')

    def test_tcg_runs_every_vcpu_on_one_thread(self):
        info = {'vmlinuz': '/k/vmlinuz', 'kvm': False}
        argv = testbed.vng_argv(info, pathlib.Path('/r'), ['true'], '3G', 2)
        self.assertIn('--disable-kvm', argv)
        opts = self._qemu_opts(argv)
        self.assertEqual('tcg,thread=single', opts[opts.index('-accel') + 1])
        self.assertEqual('2', argv[argv.index('-p') + 1])

    def test_kvm_keeps_qemu_defaults(self):
        info = {'vmlinuz': '/k/vmlinuz', 'kvm': True}
        argv = testbed.vng_argv(info, pathlib.Path('/r'), ['true'], '3G', 2)
        self.assertNotIn('--disable-kvm', argv)
        self.assertNotIn('-accel', self._qemu_opts(argv))

    def test_kernel_console_goes_to_the_run_folder(self):
        info = {'vmlinuz': '/k/vmlinuz', 'kvm': False}
        argv = testbed.vng_argv(info, pathlib.Path('/r'), ['true'], '3G', 2)
        self.assertIn('console=hvc0',
                      argv[argv.index('--append') + 1].split())
        opts = self._qemu_opts(argv)
        chardev = opts[opts.index('-chardev') + 1].split(',')
        self.assertIn('path=/r/console.log', chardev)
        self.assertIn('virtconsole,chardev=%s,bus=nvconsolebus.0'
                      % chardev[1].split('=')[1], opts)

    def test_console_tail(self):
        d = self.useFixture(fixtures.TempDir()).path
        path = pathlib.Path(d) / 'console.log'
        self.assertIn('no console log', testbed.console_tail(path))
        path.write_text(''.join('line %d\n' % i for i in range(100)))
        tail = testbed.console_tail(path, lines=3)
        self.assertEqual('line 97\nline 98\nline 99', tail)
        path.write_text('')
        self.assertEqual('(empty)', testbed.console_tail(path))

    def _bindep(self, text):
        d = self.useFixture(fixtures.TempDir()).path
        path = pathlib.Path(d) / 'bindep.txt'
        path.write_text(textwrap.dedent(text))
        return path

    def test_bindep_profiles_as_bindep_selects_them(self):
        path = self._bindep('''
            # a comment
            python3-venv [platform:dpkg]
            git
            qemu-system-x86 [platform:dpkg test]  # trailing comment
            mariadb [platform:dpkg mysql]
            libvirt-devel [platform:rpm test]
        ''')
        self.assertEqual(['python3-venv', 'git'],
                         testbed.bindep_packages(None, path))
        self.assertEqual(['python3-venv', 'git', 'qemu-system-x86'],
                         testbed.bindep_packages('test', path))
        self.assertEqual(['python3-venv', 'git', 'mariadb'],
                         testbed.bindep_packages('mysql', path))

    def test_bindep_lines_it_cannot_read_are_refused(self):
        for line in ('pkg [platform:dpkg !test]', 'pkg >=1.0',
                     'pkg [platform:dpkg'):
            e = self.assertRaises(testbed.BedError, testbed.bindep_packages,
                                  'test', self._bindep(line + '\n'))
            self.assertIn('bindep.txt:1', str(e))

    def test_project_bindep(self):
        # tools/dev.sh installs the lines without a profile: what creating
        # its virtualenv needs; the bed's "test" profile adds the rest.
        default = testbed.bindep_packages()
        self.assertIn('python3-venv', default)
        self.assertNotIn('qemu-system-x86', default)
        bed = testbed.bindep_packages(testbed.BED_PROFILE)
        for pkg in ('python3-venv', 'python3-dev', 'file', 'udev',
                    'qemu-system-x86', 'libvirt-dev', 'openvswitch-switch'):
            self.assertIn(pkg, bed)

    def test_relay_appends_without_losing_lines(self):
        # The bed's output reaches our stream through a pipe, so a file
        # our stdout is appended to keeps what was there before.
        d = self.useFixture(fixtures.TempDir()).path
        log = pathlib.Path(d) / 'log'
        log.write_text('before\n')
        read_end, write_end = os.pipe()
        with open(log, 'ab') as raw:
            stream = io.TextIOWrapper(raw)
            thread = testbed._relay(os.fdopen(read_end, 'rb'), stream)
            os.write(write_end, b'guest line 1\n')
            os.write(write_end, b'guest line 2\n')
            os.close(write_end)
            thread.join(5)
        self.assertEqual('before\nguest line 1\nguest line 2\n',
                         log.read_text())

    def test_test_python_missing_env_is_one_clear_error(self):
        d = self.useFixture(fixtures.TempDir()).path
        e = self.assertRaises(testbed.BedError, testbed.test_python,
                              os.path.join(d, 'bin', 'python'))
        self.assertIn('tools/dev.sh test -e functional', str(e))

    def test_test_python_without_subunit_is_refused(self):
        d = self.useFixture(fixtures.TempDir()).path
        # An isolated interpreter (-I -S) cannot import subunit.
        wrapper = pathlib.Path(d) / 'python'
        wrapper.write_text('#!/bin/sh\nexec %s -I -S "$@"\n' % sys.executable)
        wrapper.chmod(0o755)
        e = self.assertRaises(testbed.BedError, testbed.test_python,
                              str(wrapper))
        self.assertIn('lacks the test requirements', str(e))
        self.assertEqual(pathlib.Path(sys.executable),
                         testbed.test_python(None))

    def test_failed_prerequisite_keeps_previous_results(self):
        d = pathlib.Path(self.useFixture(fixtures.TempDir()).path)
        self.useFixture(fixtures.MockPatchObject(testbed, 'RESULTS_DIR', d))
        previous = d / 'functional.subunit'
        previous.write_bytes(b'previous run')
        err = self.useFixture(fixtures.MockPatchObject(
            sys, 'stderr', io.StringIO())).mock
        rc = testbed.main(['test', '--python', str(d / 'no-python')])
        self.assertEqual(2, rc)
        self.assertIn('no-python does not exist', err.getvalue())
        self.assertEqual(b'previous run', previous.read_bytes())

    def test_test_starts_the_services_the_functional_tests_need(self):
        # `testbed.py test tests/functional`, as the README shows it, runs
        # what tox -e functional runs.
        seen = {}

        def fake_test(args):
            seen['test'] = testbed._services(args.services)
            return 0

        def fake_run(args):
            seen['run'] = testbed._services(args.services)
            return 0

        self.useFixture(fixtures.MockPatchObject(testbed, 'cmd_test',
                                                 fake_test))
        self.useFixture(fixtures.MockPatchObject(testbed, 'cmd_run',
                                                 fake_run))
        self.assertEqual(0, testbed.main(['test', 'tests/functional']))
        self.assertEqual(0, testbed.main(['run', '--', 'true']))
        self.assertEqual({'test': ['libvirt', 'ovs'], 'run': []}, seen)


class TestUserspaces(base.TestCase):
    """``--userspace``: the host's root or the cached Debian 13 root."""

    def test_default_bed_keeps_the_host_root_and_paths(self):
        info = {'vmlinuz': '/k/vmlinuz', 'kvm': False}
        argv = testbed.vng_argv(info, pathlib.Path('/r'), ['true'], '3G', 2)
        self.assertNotIn('--root', argv)
        self.assertEqual('/r', argv[argv.index('--rwdir') + 1])
        self.assertEqual((testbed.REPO, pathlib.Path('/r')),
                         testbed.guest_paths(info, pathlib.Path('/r')))

    def test_own_root_mounts_checkout_and_run_folder(self):
        info = {'vmlinuz': '/k/vmlinuz', 'kvm': False, 'root': '/c/root'}
        argv = testbed.vng_argv(info, pathlib.Path('/r'), ['true'], '3G', 2)
        self.assertEqual('/c/root', argv[argv.index('--root') + 1])
        self.assertIn(f'--rodir={testbed.ROOT_REPO}={testbed.REPO}', argv)
        self.assertIn(f'--rwdir={testbed.ROOT_RUN}=/r', argv)
        repo, run = testbed.guest_paths(info, pathlib.Path('/r'))
        self.assertEqual((testbed.ROOT_REPO, testbed.ROOT_RUN),
                         (str(repo), str(run)))
        # The console log is QEMU's, on the host: the host path.
        self.assertIn('path=/r/console.log', ' '.join(argv))

    def test_unknown_userspace_is_refused(self):
        self.assertRaises(testbed.BedError, testbed.prepare, 'sid')
        err = self.useFixture(fixtures.MockPatchObject(
            sys, 'stderr', io.StringIO())).mock
        self.assertRaises(SystemExit, testbed.main,
                          ['--userspace', 'sid', 'info'])
        self.assertIn("invalid choice: 'sid'", err.getvalue())

    def test_root_packages_in_bindep(self):
        host = testbed.bindep_packages(testbed.ROOT_HOST_PROFILE)
        self.assertIn('debootstrap', host)
        self.assertNotIn('debootstrap',
                         testbed.bindep_packages(testbed.BED_PROFILE))
        root = testbed.bindep_packages(testbed.ROOT_PROFILE)
        for pkg in ('udev', 'kmod', 'qemu-system-x86', 'iproute2',
                    'libvirt-daemon-system', 'libvirt-clients',
                    'libxml2-utils', 'openvswitch-switch', 'python3-venv',
                    'libvirt-dev', 'python3-dev', 'gcc'):
            self.assertIn(pkg, root)
        # Host-only tools stay out of the root.
        for pkg in ('file', 'debootstrap', 'flex', 'gcc-12'):
            self.assertNotIn(pkg, root)

    def _no_boot(self):
        """What ``test`` would boot: {'userspace', 'argv'}, not booted."""
        seen = {}

        def fake_boot(command, services=(), timeout=0, userspace=None):
            seen['userspace'] = userspace
            seen['argv'] = command(pathlib.PurePosixPath('/g/repo'),
                                   pathlib.PurePosixPath('/g/run'))
            raise testbed.BedError('not booted')

        self.useFixture(fixtures.MockPatchObject(testbed, 'boot', fake_boot))
        self.useFixture(fixtures.MockPatchObject(
            testbed, 'bed_failure', lambda *a: 2))
        return seen

    def test_test_runs_the_root_venv_on_guest_paths(self):
        seen = self._no_boot()
        self.assertEqual(2, testbed.main(
            ['--userspace', 'trixie', 'test', '--python', sys.executable,
             '--pattern', 'test_migration.py']))
        self.assertEqual('trixie', seen['userspace'])
        script = seen['argv'][-1]
        self.assertIn(f'exec {testbed.ROOT_VENV}/bin/python -m subunit.run',
                      script)
        self.assertIn('-t /g/repo -s /g/repo/tests/functional '
                      '-p test_migration.py', script)
        self.assertNotIn(sys.executable, script)

    def test_several_patterns_name_the_modules(self):
        seen = self._no_boot()
        testbed.main(['test', '--python', sys.executable, '--pattern',
                      'test_migration.py,test_libvirt_*.py'])
        script = seen['argv'][-1]
        self.assertIn('cd /g/repo && exec ', script)
        self.assertIn('-m subunit.run tests.functional.test_libvirt_'
                      'paused_detach tests.functional.test_libvirt_vdpa '
                      'tests.functional.test_migration >', script)
        self.assertNotIn('discover', script)
        seen.clear()
        self.assertEqual(2, testbed.main([
            'test', '--python', sys.executable, '--pattern',
            'test_none*.py,test_nothing*.py']))
        self.assertEqual({}, seen)

    def _cache(self):
        d = pathlib.Path(self.useFixture(fixtures.TempDir()).path)
        self.useFixture(fixtures.MockPatchObject(testbed, 'CACHE', d))
        for name in ('link_modules', 'log'):
            self.useFixture(fixtures.MockPatchObject(
                testbed, name, lambda *a: None))
        built, venvs = [], []

        def build(path):
            built.append(path)
            (path / 'root').mkdir(parents=True)
            (path / 'ready.json').write_text(json.dumps({
                'debian': '13.2', 'libvirt': '11.3.0-3',
                'qemu': '1:10.0.6+ds-0+deb13u2', 'requirements': None}))
        self.useFixture(fixtures.MockPatchObject(testbed, 'build_root',
                                                 build))
        self.useFixture(fixtures.MockPatchObject(
            testbed, 'build_root_venv', venvs.append))
        return d, built, venvs

    def test_root_is_built_once(self):
        d, built, venvs = self._cache()
        info = {'kernelrelease': '6.12.117+deb12-amd64'}
        root = testbed.ensure_root(info)
        self.assertEqual(d / 'root-trixie' / 'root', root)
        self.assertEqual(root, testbed.ensure_root(info))
        self.assertEqual([d / 'root-trixie'], built)
        # The venv is its own step after the root, once.
        self.assertEqual([root], venvs)
        stamp = json.loads((d / 'root-trixie' / 'ready.json').read_text())
        self.assertEqual(testbed.requirements_digest(), stamp['requirements'])

    def test_venv_rebuilt_when_requirements_change(self):
        d, built, venvs = self._cache()
        info = {'kernelrelease': '6.12.117+deb12-amd64'}
        testbed.ensure_root(info)
        stamp = d / 'root-trixie' / 'ready.json'
        old = json.loads(stamp.read_text())
        stamp.write_text(json.dumps(dict(old, requirements='older')))
        testbed.ensure_root(info)
        self.assertEqual([d / 'root-trixie' / 'root'] * 2, venvs)
        self.assertEqual(old['requirements'],
                         json.loads(stamp.read_text())['requirements'])
        self.assertEqual(1, len(built))

    def test_packages_added_later_are_installed_into_the_root(self):
        d, built, venvs = self._cache()
        info = {'kernelrelease': '6.12.117+deb12-amd64'}
        root = testbed.ensure_root(info)
        wanted = testbed.bindep_packages(testbed.ROOT_PROFILE)
        status = root / 'var' / 'lib' / 'dpkg' / 'status'
        status.parent.mkdir(parents=True)
        status.write_text('\n\n'.join(
            'Package: %s\nStatus: %s\nVersion: 1' % (
                p, 'deinstall ok config-files' if p == 'ovn-host'
                else 'install ok installed')
            for p in wanted if p != 'ovn-central') + '\n')
        self.assertEqual(['ovn-central', 'ovn-host'],
                         testbed.root_missing_packages(root))
        (root / 'etc').mkdir()
        calls = []
        self.useFixture(fixtures.MockPatchObject(
            testbed, 'in_root', lambda root, *argv, **kw: calls.append(argv)))
        installed = []
        self.useFixture(fixtures.MockPatchObject(
            testbed, 'install_in_root',
            lambda root, packages: installed.append(packages)))
        testbed.ensure_root(info)
        self.assertEqual([['ovn-central', 'ovn-host']], installed)
        self.assertEqual([('apt-get', 'update', '-q')], calls)
        self.assertEqual(1, len(built))
