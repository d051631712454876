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

"""The start-up checks of Nova internals, on stand-ins for Nova's code.

The entries are checked against a class and a function of this module, so
each change (a parameter renamed or moved, a behaviour's marker gone, a
release outside the supported set) is made for real, in source that
``inspect`` reads. That every entry holds on the real Nova releases, and
that the driver refuses to start on such a change, is tested in
tests/nova_functional/test_driver.py (Nova's code is not imported in the
unit tests' processes).
"""

from nova_vdpa.compute import overrides
from nova_vdpa.compute import releases
from tests.unit import base

MODULE = __name__


class Nova:
    """A stand-in for a Nova class."""

    def __init__(self):
        self.vif_driver = object()

    def _unplug_vifs(self, instance, network_info, ignore_errors):
        for vif in network_info:
            try:
                vif.unplug(instance)
            except ValueError:
                if not ignore_errors:
                    raise

    @classmethod
    def get_by_filters(cls, context, filters, sort_keys=None):
        return []


def update_xml(xml_doc, migrate_data, get_vif_config):
    by_mac = {vif.mac: vif for vif in migrate_data}
    return [get_vif_config(vif=by_mac[mac]) for mac in xml_doc]


def entry(name, cls='Nova', **kwargs):
    return overrides.PrivateName(MODULE, cls, name, 'test', **kwargs)


class TestEntries(base.TestCase):

    def check(self, e, driver=None):
        return overrides.check_entry(e, driver)

    def refused(self, e, driver=None):
        ex = self.assertRaises(overrides.NovaIncompatible, self.check, e,
                               driver)
        self.assertNotIn('\n', str(ex))
        self.assertIn('checked against Nova %s' % overrides.NOVA_RELEASE,
                      str(ex))
        return str(ex)

    def test_matching_signature_and_markers(self):
        self.check(entry('_unplug_vifs',
                         signature='(self, instance, network_info, '
                                   'ignore_errors)',
                         markers=('except ValueError: if not ignore_errors:'
                                  ' raise',)))
        self.check(entry('update_xml', cls='',
                         signature='(xml_doc, migrate_data, get_vif_config)',
                         markers=('get_vif_config(vif=by_mac[mac])',)))

    def test_classmethod_signature_without_cls(self):
        self.check(entry('get_by_filters',
                         signature='(context, filters, sort_keys=None)'))

    def test_changed_signature_names_method_and_change(self):
        msg = self.refused(entry(
            '_unplug_vifs',
            signature='(self, instance, network_info, ignore_errors=False)'))
        self.assertIn(
            'cannot run on this Nova: %s.Nova._unplug_vifs takes '
            '(self, instance, network_info, ignore_errors), not '
            '(self, instance, network_info, ignore_errors=False)' % MODULE,
            msg)

    def test_reordered_parameters_refused(self):
        msg = self.refused(entry(
            'update_xml', cls='',
            signature='(migrate_data, xml_doc, get_vif_config)'))
        self.assertIn('%s.update_xml takes (xml_doc, migrate_data, '
                      'get_vif_config), not' % MODULE, msg)

    def test_missing_member(self):
        msg = self.refused(entry('_gone_in_a_later_nova'))
        self.assertIn('%s.Nova._gone_in_a_later_nova is missing' % MODULE,
                      msg)

    def test_missing_class(self):
        msg = self.refused(entry('x', cls='Gone'))
        self.assertIn('%s.Gone.x is missing' % MODULE, msg)

    def test_behaviour_marker_gone(self):
        msg = self.refused(entry(
            '_unplug_vifs', markers=('except exception.NovaException:',)))
        self.assertIn("_unplug_vifs has 'except exception.NovaException:' "
                      "0 times, not once (test)", msg)

    def test_marker_twice_refused(self):
        msg = self.refused(entry('_unplug_vifs', markers=('ignore_errors',)))
        self.assertIn("'ignore_errors' 2 times", msg)

    def test_instance_attribute(self):
        e = entry('vif_driver', on_instance=True)
        self.check(e)  # skipped without a driver
        self.check(e, Nova())
        msg = self.refused(entry('_host', on_instance=True), Nova())
        self.assertIn('Nova._host is missing', msg)

    def test_source_unreadable(self):
        msg = self.refused(overrides.PrivateName(
            'builtins', 'dict', 'get', 'test', markers=('x',)))
        self.assertIn('the source of builtins.dict.get cannot be read', msg)

    def test_parameters_ignore_annotations(self):
        def f(a: int, /, b: str = 'x', *args, c=None, **kw) -> None:
            pass
        self.assertEqual("(a, /, b='x', *args, c=None, **kw)",
                         overrides.parameters(f))


class TestRelease(base.TestCase):

    def test_supported(self):
        for version in ('34.0.0', '34.0.3', '34.0.1.dev12'):
            overrides.check_release(version)

    def test_unsupported_release_is_one_line(self):
        for version in ('35.0.0', '34.1.0', '340.0.0', '30.2.0', '31.2.0'):
            ex = self.assertRaises(overrides.NovaIncompatible,
                                   overrides.check_release, version)
            self.assertEqual(
                'nova-vdpa cannot run on this Nova: Nova %s is not a '
                'supported release (supported: 31.3.x, 32.2.x, 33.0.x, '
                '34.0.x) (nova-vdpa was checked against Nova 31.3.1, '
                '32.2.1, 33.0.2, 34.0.0)' % version, str(ex))

    def test_each_tested_release_is_accepted(self):
        for version in ('31.3.1', '32.2.1', '33.0.2', '34.0.0', '34.0.3'):
            overrides.check_release(version)

    def test_refused_release_says_why(self):
        # A release tried and found not to work gets its reason there.
        self.patch(releases, 'REFUSED', {'30': 'Nova 30 lacks X'})
        ex = self.assertRaises(overrides.NovaIncompatible,
                               overrides.check_release, '30.1.0')
        self.assertIn('Nova 30.1.0 is not a supported release (supported: '
                      '31.3.x, 32.2.x, 33.0.x, 34.0.x): Nova 30 lacks X',
                      str(ex))
        self.assertNotIn('\n', str(ex))

    def test_version_read_from_nova(self):
        self.patch(overrides, 'nova_version', lambda: '35.0.0')
        ex = self.assertRaises(overrides.NovaIncompatible,
                               overrides.check_release)
        self.assertIn('Nova 35.0.0 is not a supported release', str(ex))

    def test_check_refuses_release_before_entries(self):
        self.patch(
            overrides, 'PRIVATE_NAMES', (entry('_gone'),))
        ex = self.assertRaises(overrides.NovaIncompatible, overrides.check,
                               version='35.0.0')
        self.assertIn('Nova 35.0.0 is not a supported release', str(ex))
        ex = self.assertRaises(overrides.NovaIncompatible, overrides.check,
                               version='34.0.0')
        self.assertIn('Nova._gone is missing', str(ex))

    def test_entries_name_each_member_once(self):
        names = [e.qualname for e in overrides.PRIVATE_NAMES]
        self.assertEqual(len(names), len(set(names)))
        for e in overrides.PRIVATE_NAMES:
            self.assertTrue(e.on_instance or e.signature, e)
