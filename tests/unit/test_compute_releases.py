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

"""The table of Nova releases, and that the tests follow it.

Each supported release must be the one its tox env installs: the
constraints file of its series pins Nova to the version the table says
was tested, and tox's envlist runs that env.
"""

import configparser
import os
import re

from nova_vdpa.compute import releases
from tests.unit import base

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def _pins(path):
    """{name: version} of a constraints file's ``name===version`` lines."""
    pins = {}
    with open(path) as f:
        for line in f:
            m = re.match(r'^([A-Za-z0-9_.-]+)===([^;\s]+)\s*$', line)
            if m:
                pins[m.group(1).lower()] = m.group(2)
    return pins


class TestFind(base.TestCase):

    def test_bug_fix_releases_of_a_supported_series(self):
        for version, series in (('34.0.0', '2026.2'), ('34.0.7', '2026.2'),
                                ('34.0.1.dev4', '2026.2'),
                                ('33.0.2', '2026.1'), ('32.2.3', '2025.2'),
                                ('31.3.1', '2025.1')):
            release = releases.find(version)
            self.assertIsNotNone(release, version)
            self.assertEqual(series, release.series)

    def test_other_releases(self):
        for version in ('33.1.0', '34.1.0', '35.0.0', '3.0.0', '340.0.0',
                        '32.1.0', '31.2.0', '30.0.0', ''):
            self.assertIsNone(releases.find(version), version)

    def test_refusal_by_major_version(self):
        self.patch(releases, 'REFUSED', {'30': 'Nova 30 lacks X'})
        self.assertEqual('Nova 30 lacks X', releases.refusal('30.1.0'))
        self.assertIsNone(releases.refusal('35.0.0'))
        self.assertIsNone(releases.refusal('3.0.0'))

    def test_default_mode(self):
        for version, mode in (('31.3.1', 'eventlet'), ('33.0.2', 'eventlet'),
                              ('34.0.0', 'threading'),
                              ('35.0.0', 'threading'), (None, 'threading')):
            self.assertEqual(mode, releases.default_mode(version), version)

    def test_supported_and_refused_do_not_overlap(self):
        for release in releases.SUPPORTED:
            self.assertIsNone(releases.refusal(release.tested))
            self.assertEqual(release, releases.find(release.tested))

    def test_tested(self):
        self.assertEqual('31.3.1, 32.2.1, 33.0.2, 34.0.0', releases.tested())


class TestTestedAsClaimed(base.TestCase):
    """The tox envs install and run what the table claims."""

    def setUp(self):
        super().setUp()
        self.tox = configparser.ConfigParser(interpolation=None)
        self.tox.read(os.path.join(ROOT, 'tox.ini'))

    def env(self, release):
        # The newest release's env keeps the plain name.
        if release == releases.SUPPORTED[-1]:
            return 'nova-functional'
        return 'nova-functional-%s' % release.series

    def test_constraints_pin_the_tested_nova(self):
        for release in releases.SUPPORTED:
            pins = _pins(os.path.join(ROOT, 'tools', 'constraints',
                                      release.series + '.txt'))
            self.assertEqual(release.tested, pins.get('nova'), release)

    def test_envlist_runs_each_release(self):
        envlist = [e.strip() for e in
                   self.tox['tox']['envlist'].split(',')]
        for release in releases.SUPPORTED:
            env = self.env(release)
            self.assertIn(env, envlist)
            deps = self.tox['testenv:' + env]['deps']
            if env == 'nova-functional':
                deps = self.tox['testenv']['deps']
            self.assertIn(
                '-c{toxinidir}/tools/constraints/%s.txt' % release.series,
                deps.split())
