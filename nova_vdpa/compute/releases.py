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

"""The Nova releases nova-vdpa runs on.

This module is the one place that knows Nova releases apart: nothing else
compares versions. :mod:`nova_vdpa.compute.overrides` asks :func:`find`
and :func:`refusal` when the driver starts, and ``nova-vdpa-status check``
shows the same. A release that needs different code gets it here, named
after what differs, never as a version check in the driver.

A release is supported once its own ``VDPAServersTest`` and our Nova-level
tests pass against the driver with the release's dependency versions
(``tools/constraints/<series>.txt``) in the concurrency mode nova-compute
runs in by default on it: eventlet before Nova 34 (its tox env is
``nova-functional-<series>``), native threads from 34 on
(``nova-functional``; ``nova-functional-eventlet`` runs 34 under
eventlet). nova-vdpa itself runs in both modes
(:mod:`nova_vdpa.kernel.native`); :func:`default_mode` says which one a
release picks when nothing chooses, for ``nova-vdpa-status check``.

Every Nova internal listed in :mod:`~nova_vdpa.compute.overrides`
(signatures and markers) reads the same in 31.3.1, 32.2.1, 33.0.2 and
34.0.0 (the driver checks them at start on each);
``LibvirtDriver._get_pci_passthrough_devices`` is cached only from 34.0.0
on, which the override does not depend on. So the driver's code is the
same on each; only what :func:`default_mode` answers differs.
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
    NovaRelease('2025.1', '31.3', '31.3.1'),
    NovaRelease('2025.2', '32.2', '32.2.1'),
    NovaRelease('2026.1', '33.0', '33.0.2'),
    NovaRelease('2026.2', '34.0', '34.0.0'),
)

#: Nova's major version -> why nova-vdpa refuses that release (one line),
#: for a release tried and found not to work; none today.
REFUSED: dict[str, str] = {}


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
    major = (version or '').split('.')[0]
    if major.isdigit() and int(major) < NATIVE_BY_DEFAULT:
        return 'eventlet'
    return 'threading'


def tested() -> str:
    """The Nova versions the supported releases were tested with."""
    return ', '.join(r.tested for r in SUPPORTED)
