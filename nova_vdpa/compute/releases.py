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

"""The Nova releases nova-vdpa runs on, and why not the others.

This module is the one place that knows Nova releases apart: nothing else
compares versions. :mod:`nova_vdpa.compute.overrides` asks :func:`find`
and :func:`refusal` when the driver starts, and ``nova-vdpa-status check``
shows the same. A release that needs different code gets it here, named
after what differs, never as a version check in the driver.

nova-vdpa runs nova-compute in native threading mode only (it refuses
eventlet: ``overrides.check_concurrency_mode``), and a release is
supported only once its own ``VDPAServersTest`` and our Nova-level tests
pass against the driver in that mode, with the release's dependency
versions (``tox -e nova-functional``, ``tools/constraints/``). What each
earlier release did in those tests (:data:`REFUSED`):

* Nova 31 (2025.1) has no native threading mode: no
  ``nova.utils.concurrency_mode_threading``, and
  ``OS_NOVA_DISABLE_EVENTLET_PATCHING`` is only a workaround for Sphinx.
  162 of 162 tests failed on 31.3.1 (``AttributeError: module
  'nova.utils' has no attribute 'concurrency_mode_threading'``).
* Nova 32 (2025.2) calls native threading experimental, and there its
  resource tracker cannot report to placement: ``copy.deepcopy`` of the
  report client's provider tree raises ``TypeError: cannot pickle
  '_thread.lock' object`` at every resource update (32.2.1 with
  oslo.concurrency 7.2.0), so no PCI device reaches Nova
  (``VDPAServersOnDemandTest.test_create_server``: ``5 != 0`` PCI devices);
  115 of 162 tests failed.
* Nova 33 (2026.1) calls native threading experimental, and its own
  functional test framework does not run in it. Its notification fixture
  finds a notification's test by walking eventlet's greenlets: every
  server create fails with a 500 (``AttributeError: 'NoneType' object has
  no attribute 'parent'`` in ``FakeVersionedNotifier.
  _get_sender_test_case_id``); 115 of 162 tests failed on 33.0.2
  (``tox -e nova-functional-2026.1``), among them ``VDPAServersOnDemandTest.
  test_create_server``, ``LifecycleTest.test_boot`` and
  ``LiveMigrationTest.test_live_migrate``. With that one fixture made to
  skip the walk, as Nova 34 does in threading mode (an experiment, not
  kept), tests still failed on its database fixture, which shares one
  in-memory SQLite connection between threads (``sqlite3.OperationalError:
  cannot start a transaction within a transaction``; Nova 34 added a
  file-backed database and a writer lock for threads). Nothing shows
  nova-vdpa working there, so it is not claimed.

Every Nova internal listed in :mod:`~nova_vdpa.compute.overrides`
(signatures and markers) reads the same in 32.2.1, 33.0.2 and 34.0.0;
``LibvirtDriver._get_pci_passthrough_devices`` is cached only from 34.0.0
on, which the override does not depend on.
"""

import dataclasses
import importlib


@dataclasses.dataclass(frozen=True)
class NovaRelease:
    """A Nova release series nova-vdpa supports.

    :param series: OpenStack's name for it, e.g. ``2026.2``.
    :param version: ``major.minor`` of Nova's version: its bug-fix
        releases (``major.minor.y``) are accepted, others refused.
    :param tested: the Nova version nova-vdpa's tests ran on.
    """

    series: str
    version: str
    tested: str


#: Oldest first.
SUPPORTED: tuple[NovaRelease, ...] = (
    NovaRelease('2026.2', '34.0', '34.0.0'),
)

#: Nova's major version -> why nova-vdpa refuses that release (one line).
REFUSED: dict[str, str] = {
    '31': 'Nova 31 (2025.1) runs nova-compute under eventlet only, which '
          'nova-vdpa refuses',
    '32': "Nova 32 (2025.2) cannot report a compute node's resources to "
          'placement in native threading mode, the only one nova-vdpa runs '
          "in (TypeError: cannot pickle '_thread.lock' object)",
    '33': "Nova 33 (2026.1)'s own functional tests do not run in native "
          'threading mode, the only one nova-vdpa runs in, so nova-vdpa '
          'was not shown to work on it',
}


def _series_key(version: str) -> str:
    return '.'.join(version.split('.')[:2])


def find(version: str) -> NovaRelease | None:
    """The supported release a Nova version belongs to, or None.

    :param version: Nova's version string, e.g. ``34.0.1``.
    """
    key = _series_key(version)
    for release in SUPPORTED:
        if release.version == key:
            return release
    return None


def refusal(version: str) -> str | None:
    """Why a Nova version is refused, or None when it is not known why.

    :param version: Nova's version string, e.g. ``31.3.1``.
    """
    return REFUSED.get(version.split('.')[0])


def installed() -> str:
    """The installed Nova's version, as Nova reports it (pbr).

    :raises: ImportError without Nova.
    """
    version = importlib.import_module('nova.version')
    return str(version.version_info.version_string())


#: the first Nova major version whose nova-compute runs native threads
#: when nothing chooses a mode (``nova.monkey_patch.patch``'s default)
NATIVE_BY_DEFAULT = 34


def default_mode(version: str | None) -> str:
    """nova-compute's concurrency mode when nothing chooses one.

    :param version: Nova's version string, or None when unknown (taken
        for a recent one).
    :returns: ``threading`` (native threads) or ``eventlet``.
    """
    if version and version.split('.')[0].isdigit() and \
            int(version.split('.')[0]) < NATIVE_BY_DEFAULT:
        return 'eventlet'
    return 'threading'


def tested() -> str:
    """The Nova versions the supported releases were tested with."""
    return ', '.join(r.tested for r in SUPPORTED)
