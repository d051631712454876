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

"""Is nova-vdpa installed where Nova's driver loader finds it?

Nova loads ``'nova.virt.' + compute_driver``; ``nova`` and ``nova.virt``
are regular packages (each has an ``__init__.py``), so Python looks for
``nova.virt.nova_vdpa`` only in Nova's own ``nova/virt`` folder. The
package ships ``nova/virt/nova_vdpa/__init__.py`` for that, and it works
only when it lands in the same site-packages as Nova. What each kind of
install did with a wheel of nova-vdpa and Nova 34.0.0 (2026-12-01):

* ``pip install`` with the Python of Nova's virtualenv: the shim is
  ``<site-packages>/nova/virt/nova_vdpa``, beside Nova's: loads;
* ``pip install --user`` (a virtualenv with system site-packages, so the
  user site is on ``sys.path``): ``nova_vdpa`` imports, but the shim is in
  the user site's ``nova/virt/``, which Python never searches:
  ``nova.virt.nova_vdpa`` is not found;
* ``pip install --prefix <dir>``, with ``<dir>``'s site-packages on
  ``PYTHONPATH``: the same;
* ``pip install -e`` (setuptools' editable finder): ``nova_vdpa`` comes
  from the checkout, and the finder's map names the shim by path
  (``nova/virt/nova_vdpa``), never as a module: not found.

When the shim is not found, nova-compute fails in Nova's own loader,
before any nova-vdpa code runs ("Unable to load the virtualization
driver"); ``nova-vdpa-status check`` says why. When the driver does run,
:func:`check` refuses a shim found anywhere but beside Nova's
``nova/virt`` (a path hack, another finder), so one installation serves
nova-compute and the status command.

This module imports Nova lazily: the status command reports a Nova that
is missing.
"""

import dataclasses
import importlib.util
import os

from nova_vdpa import exception

#: The shim's module name, as Nova's loader imports it.
SHIM = 'nova.virt.nova_vdpa'


class UnsupportedInstall(exception.NovaVdpaException):
    msg_fmt = ('nova-vdpa is not installed where Nova loads it: '
               '%(reason)s. Install it with the pip of the Python that '
               'runs nova-compute, without --user, --prefix or -e (see '
               'the install guide).')


@dataclasses.dataclass(frozen=True)
class Layout:
    """Where Python finds Nova, its ``nova/virt`` folder, and us.

    :param nova_virt: Nova's ``nova/virt`` folder; None without Nova.
    :param shim: the file ``nova.virt.nova_vdpa`` resolves to, or None.
    :param package: the file of the ``nova_vdpa`` package in use.
    """

    nova_virt: str | None
    shim: str | None
    package: str


def layout() -> Layout:
    """Read the layout of this Python (imports ``nova.virt`` only)."""
    import nova_vdpa
    spec = importlib.util.find_spec('nova')
    if spec is None:
        return Layout(None, None, nova_vdpa.__file__ or '')
    import nova.virt
    shim = importlib.util.find_spec(SHIM)
    return Layout(os.path.dirname(nova.virt.__file__ or ''),
                  shim.origin if shim is not None else None,
                  nova_vdpa.__file__ or '')


def _site(package_file: str) -> str:
    """``<site>/nova_vdpa/__init__.py`` -> ``<site>``."""
    return os.path.dirname(os.path.dirname(os.path.realpath(package_file)))


def problem(found: Layout) -> str | None:
    """Why Nova's loader would not load nova-vdpa; None if it would."""
    if found.nova_virt is None:
        return 'this Python has no Nova'
    expected = os.path.join(found.nova_virt, 'nova_vdpa', '__init__.py')
    if found.shim is None:
        return ('%s is not importable: there is no %s beside Nova\'s '
                'nova/virt (nova_vdpa itself is in %s)'
                % (SHIM, expected, _site(found.package)))
    if os.path.realpath(found.shim) != os.path.realpath(expected):
        return ('%s resolves to %s, not to %s beside Nova\'s nova/virt'
                % (SHIM, found.shim, expected))
    return None


def mixed(found: Layout) -> str | None:
    """A ``nova_vdpa`` from elsewhere than the shim's site-packages.

    The shim imports whichever ``nova_vdpa`` comes first on ``sys.path``
    (a checkout on ``PYTHONPATH``, a ``--user`` copy): it works, but the
    code that runs is not the installed one.
    """
    if found.nova_virt is None or found.shim is None:
        return None
    nova_site = os.path.dirname(os.path.dirname(
        os.path.realpath(found.nova_virt)))
    ours = _site(found.package)
    if ours != nova_site:
        return ('the nova_vdpa package in use is in %s, not in Nova\'s %s'
                % (ours, nova_site))
    return None


def check(found: Layout | None = None) -> None:
    """Refuse an installation Nova's loader does not serve.

    :param found: the layout; read from this Python when not given.
    :raises: UnsupportedInstall saying what is where.
    """
    reason = problem(layout() if found is None else found)
    if reason is not None:
        raise UnsupportedInstall(reason=reason)
