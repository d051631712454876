#!/usr/bin/env python3
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

"""The nova-vdpa test bed: a real Debian 6.12 kernel in a small QEMU VM.

The bed boots Debian's 6.12 kernel with virtme-ng, the host filesystem
shared read-only (the checkout and its tox virtualenvs included), and runs a
command there as root with the vdpa, vhost_vdpa, virtio_vdpa, vdpa_sim_net,
netdevsim and openvswitch modules loaded and, on request, libvirtd and Open
vSwitch running (``tools/testbed-guest.sh`` does the guest side).

Sub-commands::

    testbed.py prepare              install and build everything (cached)
    testbed.py run [opts] -- CMD    boot, run CMD as root inside, return its
                                    exit status
    testbed.py test [opts] [PATH]   run functional tests in one guest Python
                                    process; subunit lands in .test-results/
    testbed.py info                 show what the bed would use
    testbed.py packages [PROFILE]   list (--install) missing packages of
                                    bindep.txt (tools/dev.sh uses it)

``--userspace`` (before the sub-command) picks what runs above the kernel:
``bookworm`` (the default) is the host itself (Debian 12: libvirt 9.0,
QEMU 7.2), ``trixie`` a Debian 13 root (libvirt 11, QEMU 10) that
``prepare`` builds once with debootstrap from Debian's mirror and caches;
the same kernel and modules boot under both (see ROOT_* below).

Only the standard library is used, so this runs before any virtualenv
exists. Downloads and builds are cached outside the checkout, in
``$NOVA_VDPA_TESTBED_CACHE`` (default ``~/.cache/nova-vdpa-testbed``), so a
fresh clone reuses them; per-run output goes to ``.testbed/`` (git-ignored).
"""

import argparse
import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
CACHE = pathlib.Path(os.environ.get(
    'NOVA_VDPA_TESTBED_CACHE',
    pathlib.Path.home() / '.cache' / 'nova-vdpa-testbed'))
RUN_DIR = REPO / '.testbed'
RESULTS_DIR = REPO / '.test-results'

# Debian packages: bindep.txt lists them (one source for the bed, for
# tools/dev.sh and for the bindep tool); see bindep_packages.
BINDEP = REPO / 'bindep.txt'
# The bed's packages are bindep's "test" profile.
BED_PROFILE = 'test'
VIRTME_NG = 'virtme-ng==1.42'
KERNEL_SERIES = '6.12'
FLAVOUR = 'amd64'
# Modules Debian's 6.12 kernel does not ship; built out of tree from
# linux-source. Each entry: build dir -> (source files, Kbuild text or
# None to use the directory's own Makefile, extra make variables).
OOT_MODULES = {
    'vdpa_sim': (
        ['drivers/vhost/vringh.c', 'drivers/vdpa/vdpa_sim/vdpa_sim.c',
         'drivers/vdpa/vdpa_sim/vdpa_sim.h',
         'drivers/vdpa/vdpa_sim/vdpa_sim_net.c'],
        'obj-m := vringh.o vdpa_sim.o vdpa_sim_net.o\n', []),
    'netdevsim': (
        ['drivers/net/netdevsim/'], None, ['CONFIG_NETDEVSIM=m']),
}
# Drivers the guest loads, in this order. virtio_vdpa registers before
# vhost_vdpa on purpose: a new device then autoprobes to the wrong driver,
# which is the case nova-vdpa's deterministic binding must handle.
# vdpa_sim loads with use_va=0: its devices then get guest memory by
# physical address through an IOTLB, as hardware does, and any guest
# carries traffic; with its default (use_va=1) only a guest with shared,
# file-backed memory would (nova_vdpa.kernel.sysfs.uses_virtual_addresses;
# tests/functional/test_datapath.py reloads it to show both). "name:a=b"
# passes module parameters.
GUEST_MODULES = ['vdpa', 'virtio_vdpa', 'vhost_vdpa', 'vdpa_sim:use_va=0',
                 'vdpa_sim_net', 'netdevsim', 'openvswitch']
BOOT_APPEND = ('modprobe.blacklist=ahci,libahci,iTCO_wdt,i2c_i801,lpc_ich,'
               'pcspkr,psmouse console=hvc0')
# vng sends the kernel console (ttyS0) to /dev/null. A second console on a
# virtio console port (hvc0: the 8250 driver serves only one ttyS console)
# writes it to the run folder, so that a guest that dies (an oops, a
# panic) says why.
CONSOLE_LOG = 'console.log'
# Multi-threaded TCG (QEMU's default: one host thread per vCPU) lets a
# vCPU run a stale int3 while the kernel live-patches its text (static keys
# flip when modules load); the kernel then dies with "Oops: int3" in
# __schedule (seen in one CI run and in one of two runs after it). One TCG
# thread for all vCPUs makes code changes visible to every vCPU at once.
TCG_OPTS = '-accel tcg,thread=single'

# The userspaces above the kernel. "bookworm" is the host's own root,
# shared read-only (what the bed always did); "trixie" is a Debian 13 root
# built once by debootstrap into the cache. In that root the guest runs the
# root's libvirtd, QEMU and Open vSwitch, and its own Python: the host's
# tox venv (Python 3.11, linked against the host's libvirt 9.0) cannot run
# on Python 3.13, so `prepare` builds a venv inside the root from the same
# requirements files (requirements.txt, test-requirements.txt, plus
# libvirt-python, built there against libvirt 11), and rebuilds only that
# venv when those files change. The checkout is mounted at ROOT_REPO and
# the run folder at ROOT_RUN: their host paths do not exist in the root.
USERSPACES = ('bookworm', 'trixie')
DEFAULT_USERSPACE = 'bookworm'
ROOT_SUITE = 'trixie'
ROOT_HOST_PROFILE = 'trixie'       # bindep: what builds the root (host)
ROOT_PROFILE = 'trixie-root'       # bindep: what the root gets inside
ROOT_MIRROR = os.environ.get('NOVA_VDPA_TESTBED_MIRROR',
                             'http://deb.debian.org/debian')
ROOT_REPO = '/nova-vdpa/repo'
ROOT_RUN = '/nova-vdpa/run'
ROOT_VENV = '/opt/nova-vdpa/venv'
ROOT_REQUIREMENTS = ('requirements.txt', 'test-requirements.txt')
# Built from source in the root against its libvirt-dev (like the
# functional tox env does on the host).
ROOT_EXTRA_PIP = ('libvirt-python',)


class BedError(Exception):
    """The bed cannot be prepared or booted; the message says why."""


def log(msg):
    print(f'testbed: {msg}', file=sys.stderr, flush=True)


def sh(cmd, **kwargs):
    """Run a host command, raising BedError with its output on failure."""
    kwargs.setdefault('stdout', subprocess.PIPE)
    kwargs.setdefault('stderr', subprocess.STDOUT)
    proc = subprocess.run(cmd, text=True, **kwargs)
    if proc.returncode != 0:
        out = (proc.stdout or '').strip()[-3000:]
        raise BedError(f'{shlex.join(map(str, cmd))} failed '
                       f'({proc.returncode}):\n{out}')
    return proc.stdout or ''


# --------------------------------------------------------------- packages
_apt_updated = False


def apt_update():
    global _apt_updated
    if not _apt_updated:
        log('apt-get update')
        sh(['apt-get', 'update', '-q'])
        _apt_updated = True


def bindep_packages(profile=None, path=None):
    """The Debian packages bindep.txt selects for ``profile``.

    The subset of bindep's format the file uses: ``name [selector ...]``
    where a selector is ``platform:dpkg`` (or ``platform:debian``) or a
    profile name. As with bindep, a line without a profile is selected for
    every profile, and ``profile=None`` selects only those. Anything else
    (negation, versions, other platforms only) is refused rather than
    misread.
    """
    path = path or BINDEP
    selected = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split('#', 1)[0].strip()
        if not line:
            continue
        name, _, rest = line.partition('[')
        words = name.split()
        rest = rest.strip()
        if len(words) != 1 or (rest and not rest.endswith(']')):
            raise BedError(f'{path.name}:{number}: expected "package '
                           f'[selectors]", got {raw.strip()!r}')
        selectors = rest[:-1].split() if rest else []
        platforms = [s for s in selectors if s.startswith('platform:')]
        profiles = [s for s in selectors if not s.startswith('platform:')]
        if any(s.startswith('!') for s in selectors):
            raise BedError(f'{path.name}:{number}: negated selectors are '
                           'not supported here')
        if platforms and not {'platform:dpkg', 'platform:debian'} & set(
                platforms):
            continue
        if not profiles or profile in profiles:
            selected.append(words[0])
    return selected


def missing_packages(packages):
    """Those of ``packages`` dpkg does not list as installed."""
    if shutil.which('dpkg-query') is None:
        raise BedError('dpkg-query not found: the project installs its '
                       'packages on Debian only (see bindep.txt)')
    missing = []
    for pkg in packages:
        proc = subprocess.run(['dpkg-query', '-W', '-f=${Status}', pkg],
                              capture_output=True, text=True)
        if 'install ok installed' not in proc.stdout:
            missing.append(pkg)
    return missing


def ensure_packages(profile=None):
    """Install what bindep.txt selects for ``profile`` and is missing."""
    missing = missing_packages(bindep_packages(profile))
    if not missing:
        return
    if os.geteuid() != 0:
        raise BedError('missing Debian packages %s; run as root (apt-get '
                       'install) or install them first' % ' '.join(missing))
    apt_update()
    log('installing ' + ' '.join(missing))
    sh(['apt-get', 'install', '-y', '-q', '--no-install-recommends']
       + missing, env=dict(os.environ, DEBIAN_FRONTEND='noninteractive'))


def vng_path():
    return CACHE / 'venv' / 'bin' / 'vng'


def ensure_virtme_ng():
    if vng_path().exists():
        return
    log(f'installing {VIRTME_NG} into {CACHE / "venv"}')
    sh([sys.executable, '-m', 'venv', '--clear', str(CACHE / 'venv')])
    sh([str(CACHE / 'venv' / 'bin' / 'pip'), 'install', '--quiet',
        VIRTME_NG])


# ----------------------------------------------------------------- kernel
def _madison(pkg):
    proc = subprocess.run(['apt-cache', 'madison', pkg],
                          capture_output=True, text=True)
    return [line.split('|')[1].strip()
            for line in proc.stdout.splitlines() if '|' in line]


def kernel_packages(version):
    """Debian package names for one 6.12 build, e.g. 6.12.117-1~deb12u1."""
    abi = version.split('-')[0] + '+deb12'
    return abi, {
        'image': f'linux-image-{abi}-{FLAVOUR}',
        'headers': f'linux-headers-{abi}-{FLAVOUR}',
        'common': f'linux-headers-{abi}-common',
        'kbuild': f'linux-kbuild-{abi}',
        'source': f'linux-source-{KERNEL_SERIES}',
    }


def resolve_kernel():
    """Pick the newest version for which the whole package set exists.

    Debian's archive drops old kernel builds, so nothing is hard-coded:
    every version of linux-source-6.12 is tried, newest first, until the
    image, both headers packages and kbuild exist at that same version.
    """
    wanted = os.environ.get('NOVA_VDPA_TESTBED_KERNEL_VERSION')
    for attempt in range(2):
        versions = _madison(f'linux-source-{KERNEL_SERIES}')
        for version in versions:
            if wanted and version != wanted:
                continue
            abi, pkgs = kernel_packages(version)
            if all(version in _madison(p) for p in pkgs.values()):
                return version
        if attempt == 0 and os.geteuid() == 0:
            apt_update()
    return None


def cached_kernels():
    out = []
    for stamp in sorted(CACHE.glob('kernel-*/ready.json')):
        out.append(json.loads(stamp.read_text()))
    return out


def kernel_dir(version):
    return CACHE / f'kernel-{version}'


def ensure_kernel():
    version = resolve_kernel()
    if version is None:
        have = cached_kernels()
        if not have:
            raise BedError(
                'no complete Debian linux-*-6.12 package set (image, '
                'headers, headers-common, kbuild, linux-source at one '
                'version) is available from apt, and none is cached')
        info = have[-1]
        log(f'apt offers no complete 6.12 set; using cached {info["version"]}')
        return info
    kdir = kernel_dir(version)
    stamp = kdir / 'ready.json'
    if stamp.exists():
        info = json.loads(stamp.read_text())
        log(f'kernel {info["kernelrelease"]} (Debian {version}), cached')
        return info
    log(f'picked Debian kernel {version} (newest complete 6.12 set)')
    abi, pkgs = kernel_packages(version)
    kernelrelease = f'{abi}-{FLAVOUR}'
    if kdir.exists():
        shutil.rmtree(kdir)
    work = pathlib.Path(tempfile.mkdtemp(prefix='kernel-', dir=CACHE))
    try:
        debs = work / 'debs'
        debs.mkdir()
        # _apt downloads into a folder it can write; otherwise apt warns
        # and falls back to root, which is harmless but noisy.
        os.chmod(debs, 0o777)
        t0 = time.monotonic()
        sh(['apt-get', 'download', '-q']
           + [f'{p}={version}' for p in pkgs.values()], cwd=debs)
        log(f'downloaded {len(pkgs)} packages in '
            f'{time.monotonic() - t0:.0f} s')
        root = work / 'root'
        for key in ('image', 'headers', 'common', 'kbuild'):
            deb = next(debs.glob(f'{pkgs[key]}_*.deb'))
            sh(['dpkg-deb', '-x', str(deb), str(root)])
        headers = root / 'usr' / 'src' / f'linux-headers-{kernelrelease}'
        # The headers' Makefile includes the common tree by absolute path.
        mk = headers / 'Makefile'
        mk.write_text(mk.read_text().replace(
            'include /usr/src/', f'include {root}/usr/src/'))
        build_modules(debs, pkgs['source'], headers, root, kernelrelease,
                      work)
        shutil.rmtree(debs)
        info = {'version': version, 'kernelrelease': kernelrelease,
                'vmlinuz': str(kdir / 'root' / 'boot' /
                               f'vmlinuz-{kernelrelease}')}
        (work / 'ready.json').write_text(json.dumps(info, indent=1))
        # The Makefile names the folder it lives in: fix it for the rename.
        mk.write_text(mk.read_text().replace(str(work), str(kdir)))
        os.rename(work, kdir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    log(f'kernel {kernelrelease} ready in {kdir}')
    return info


def build_modules(debs, source_pkg, headers, root, kernelrelease, work):
    src = work / 'src'
    src.mkdir()
    deb = next(debs.glob(f'{source_pkg}_*.deb'))
    prefix = f'linux-source-{KERNEL_SERIES}/'
    members = sorted({prefix + f.rstrip('/')
                      for files, _, _ in OOT_MODULES.values() for f in files})
    t0 = time.monotonic()
    # Only the few source files needed are unpacked from the 150 MB tarball.
    tarball = work / 'linux-source.tar.xz'
    with open(tarball, 'wb') as out:
        unpack = subprocess.Popen(['dpkg-deb', '--fsys-tarfile', str(deb)],
                                  stdout=subprocess.PIPE)
        subprocess.run(['tar', '-x', '-O', '-f', '-',
                        f'./usr/src/linux-source-{KERNEL_SERIES}.tar.xz'],
                       stdin=unpack.stdout, stdout=out, check=True)
        if unpack.wait():
            raise BedError(f'dpkg-deb could not read {deb}')
    sh(['tar', '-x', '-J', '-f', str(tarball), '-C', str(src)] + members)
    tarball.unlink()
    extra = root / 'lib' / 'modules' / kernelrelease / 'extra'
    extra.mkdir(parents=True)
    for name, (files, kbuild, make_vars) in OOT_MODULES.items():
        bdir = work / 'build' / name
        bdir.mkdir(parents=True)
        for f in files:
            path = src / prefix / f
            for p in (sorted(path.iterdir()) if path.is_dir() else [path]):
                shutil.copy(p, bdir / p.name)
        if kbuild is None:
            (bdir / 'Makefile').rename(bdir / 'Kbuild')
        else:
            (bdir / 'Kbuild').write_text(kbuild)
        # No pahole here: skip BTF for these modules.
        sh(['make', '-s', '-C', str(headers), f'M={bdir}',
            'CONFIG_DEBUG_INFO_BTF_MODULES=', f'-j{os.cpu_count() or 1}']
           + make_vars + ['modules'])
        for ko in bdir.glob('*.ko'):
            shutil.copy(ko, extra / ko.name)
    sh(['depmod', '-b', str(root), kernelrelease])
    shutil.rmtree(src)
    shutil.rmtree(work / 'build')
    log(f'built {", ".join(p.name for p in sorted(extra.iterdir()))} in '
        f'{time.monotonic() - t0:.0f} s')


# ------------------------------------------------------------------ iPXE
# The bed's traffic guest (tests/functional/test_datapath.py) is iPXE, not
# an OS: Debian 13's ipxe.lkrn, booted by QEMU as a Linux kernel with an
# iPXE script as its initrd, opens the NIC and pings in a loop (Debian 12's
# 2019 build has no ping command). The same file serves both userspaces:
# `prepare` fetches the trixie package with apt itself, through a private
# apt configuration (its lists and cache in the bed's cache, the host's
# Debian keyring), so the host's own apt sources stay untouched.
IPXE_SUITE = 'trixie'
IPXE_PACKAGE = 'ipxe'
IPXE_FILE = 'usr/lib/ipxe/ipxe.lkrn'
IPXE_KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg'
#: the name the guest finds it under, in its run folder
IPXE_GUEST_NAME = 'ipxe.lkrn'


def ipxe_dir():
    return CACHE / f'ipxe-{IPXE_SUITE}'


def ensure_ipxe():
    """Debian 13's ipxe.lkrn in the cache, fetched once; its path."""
    path = ipxe_dir()
    target = path / 'ipxe.lkrn'
    with cache_lock(path.name):
        if target.exists():
            return target
        work = pathlib.Path(tempfile.mkdtemp(prefix=f'{path.name}-',
                                             dir=CACHE))
        try:
            (work / 'lists' / 'partial').mkdir(parents=True)
            (work / 'archives' / 'partial').mkdir(parents=True)
            debs = work / 'debs'
            debs.mkdir()
            os.chmod(debs, 0o777)
            sources = work / 'sources.list'
            sources.write_text(f'deb [signed-by={IPXE_KEYRING}] '
                               f'{ROOT_MIRROR} {IPXE_SUITE} main\n')
            apt = ['apt-get', '-q',
                   '-o', f'Dir::Etc::SourceList={sources}',
                   '-o', 'Dir::Etc::SourceParts=/dev/null',
                   '-o', f'Dir::State::Lists={work / "lists"}',
                   '-o', f'Dir::Cache={work}',
                   '-o', 'Dir::Cache::pkgcache=', '-o',
                   'Dir::Cache::srcpkgcache=',
                   '-o', 'Acquire::Languages=none',
                   '-o', 'APT::Sandbox::User=root']
            log(f'fetching {IPXE_PACKAGE} from Debian {IPXE_SUITE}')
            sh(apt + ['update'])
            sh(apt + ['download', IPXE_PACKAGE], cwd=debs)
            deb = next(debs.glob(f'{IPXE_PACKAGE}_*.deb'))
            sh(['dpkg-deb', '-x', str(deb), str(work / 'root')])
            lkrn = work / 'root' / IPXE_FILE
            if not lkrn.exists():
                raise BedError(f'{deb.name} has no {IPXE_FILE}')
            path.mkdir(exist_ok=True)
            (path / 'version').write_text(deb.name + '\n')
            shutil.copy(lkrn, target.with_suffix('.tmp'))
            os.rename(target.with_suffix('.tmp'), target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    log(f'{IPXE_PACKAGE} ready in {path}')
    return target


# ------------------------------------------------------------------- boot
def use_kvm(info):
    """Whether KVM really boots this kernel here (probed once, cached).

    /dev/kvm can exist while running a stock kernel under it fails (a
    paravirtual KVM); TCG is the safe default.
    """
    if os.environ.get('NOVA_VDPA_TESTBED_ACCEL') in ('tcg', 'kvm'):
        return os.environ['NOVA_VDPA_TESTBED_ACCEL'] == 'kvm'
    if not os.path.exists('/dev/kvm'):
        return False
    key = f'{os.uname().release}-{info["kernelrelease"]}'
    probe = CACHE / f'kvm-probe-{key}.json'
    if probe.exists():
        return json.loads(probe.read_text())['boots']
    log('probing whether KVM boots the kernel')
    try:
        proc = subprocess.run(
            [str(vng_path()), '--run', info['vmlinuz'], '-m', '1G', '-p', '1',
             '--exec', 'echo nova-vdpa-kvm-probe-ok'],
            capture_output=True, text=True, timeout=120,
            env=_vng_env())
        boots = 'nova-vdpa-kvm-probe-ok' in proc.stdout
        detail = (proc.stdout + proc.stderr).strip()[-300:]
    except subprocess.TimeoutExpired:
        boots, detail = False, 'timed out'
    probe.write_text(json.dumps({'boots': boots, 'detail': detail}))
    # What QEMU said is kept in the probe file, not shown: on a paravirtual
    # KVM it is an assertion or an emulation failure nobody has to act on.
    log('KVM boots the kernel: the bed uses KVM' if boots else
        f'KVM cannot boot the kernel on this host: the bed uses TCG '
        f'(slower; QEMU\'s output is in {probe})')
    return boots


def _vng_env():
    env = dict(os.environ)
    # vng runs its helper scripts from its own bin folder.
    env['PATH'] = f'{vng_path().parent}:{env.get("PATH", "")}'
    return env


def prepare(userspace=DEFAULT_USERSPACE):
    if userspace not in USERSPACES:
        raise BedError(f'unknown userspace {userspace!r}; known: '
                       + ', '.join(USERSPACES))
    CACHE.mkdir(parents=True, exist_ok=True)
    ensure_packages(BED_PROFILE)
    ensure_virtme_ng()
    info = ensure_kernel()
    info['kvm'] = use_kvm(info)
    info['ipxe'] = str(ensure_ipxe())
    info['userspace'] = userspace
    if userspace != DEFAULT_USERSPACE:
        info['root'] = str(ensure_root(info))
    return info


# ------------------------------------------------------------------- root
def root_dir():
    return CACHE / f'root-{ROOT_SUITE}'


def requirements_digest():
    """What the root's venv is built from: its rebuild key."""
    digest = hashlib.sha256()
    for name in ROOT_REQUIREMENTS:
        digest.update((REPO / name).read_bytes())
    digest.update(' '.join(ROOT_EXTRA_PIP).encode())
    return digest.hexdigest()[:16]


@contextlib.contextmanager
def cache_lock(name):
    """Hold ``CACHE/name.lock``: one builder at a time, others wait."""
    with open(CACHE / f'{name}.lock', 'w') as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f'waiting for another testbed.py building {name}')
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def in_root(root, *argv, **kwargs):
    """Run ``argv`` chrooted in ``root``.

    /proc is mounted in a private mount namespace: gone with the command,
    nothing is left mounted.
    """
    script = ('mount -t proc proc "$0/proc" && exec chroot "$0" "$@"')
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive', LC_ALL='C.UTF-8',
               PATH='/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin',
               **kwargs.pop('env', {}))
    return sh(['unshare', '--mount', '--propagation', 'private', 'sh', '-c',
               script, str(root), *argv], env=env, **kwargs)


def ensure_root(info):
    """The Debian 13 root, built once (ready.json marks it complete).

    Built in a temporary folder and renamed into place under a lock, so
    two beds never race and a failed build leaves nothing behind. The
    cached kernel's module tree is linked in (the guest loads modules from
    the root) and the test venv rebuilt when the requirements changed.
    """
    path = root_dir()
    with cache_lock(path.name):
        if not (path / 'ready.json').exists():
            build_root(path)
        stamp = json.loads((path / 'ready.json').read_text())
        # A package added to bindep.txt's root profile after the root was
        # built (ovn-central, ovn-host) is installed into it now.
        missing = root_missing_packages(path / 'root')
        if missing:
            shutil.copy('/etc/resolv.conf', path / 'root' / 'etc' /
                        'resolv.conf')
            in_root(path / 'root', 'apt-get', 'update', '-q')
            install_in_root(path / 'root', missing)
        if stamp.get('requirements') != requirements_digest():
            t0 = time.monotonic()
            build_root_venv(path / 'root')
            stamp['venv_seconds'] = round(time.monotonic() - t0)
            stamp['requirements'] = requirements_digest()
            (path / 'ready.json').write_text(json.dumps(stamp, indent=1))
        link_modules(info, path / 'root')
    log(f'Debian {stamp["debian"]} root: libvirt {stamp["libvirt"]}, '
        f'QEMU {stamp["qemu"]}, cached')
    return path / 'root'


def build_root(path):
    ensure_packages(ROOT_HOST_PROFILE)
    if path.exists():
        shutil.rmtree(path)
    work = pathlib.Path(tempfile.mkdtemp(prefix=f'{path.name}-', dir=CACHE))
    root = work / 'root'
    try:
        t0 = time.monotonic()
        log(f'debootstrap {ROOT_SUITE} from {ROOT_MIRROR}')
        sh(['debootstrap', '--variant=minbase', ROOT_SUITE, str(root),
            ROOT_MIRROR])
        # No service starts inside the chroot while packages install.
        install_in_root(root, bindep_packages(ROOT_PROFILE))
        # Mount points of the checkout and the run folder (the root is
        # read-only in the guest).
        for mnt in (ROOT_REPO, ROOT_RUN):
            (root / mnt.lstrip('/')).mkdir(parents=True)
        versions = {'debian': (root / 'etc' / 'debian_version')
                    .read_text().strip()}
        for key, pkg in (('libvirt', 'libvirt-daemon'),
                         ('qemu', 'qemu-system-x86')):
            versions[key] = in_root(root, 'dpkg-query', '-W', '-f',
                                    '${Version}', pkg).strip()
        # The venv comes next (ensure_root): its own step, so that a
        # failed pip run does not cost the root.
        versions['requirements'] = None
        versions['build_seconds'] = round(time.monotonic() - t0)
        (work / 'ready.json').write_text(json.dumps(versions, indent=1))
        os.rename(work, path)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    log(f'Debian {ROOT_SUITE} root built in {versions["build_seconds"]} s')


def root_missing_packages(root):
    """The packages of the root profile that the root lacks.

    Read from the root's dpkg status file; a root without one (not made
    by debootstrap) is taken as it is.
    """
    status = root / 'var' / 'lib' / 'dpkg' / 'status'
    if not status.exists():
        return []
    installed = set()
    for stanza in status.read_text(errors='replace').split('\n\n'):
        fields = dict(line.split(': ', 1) for line in stanza.splitlines()
                      if ': ' in line and not line.startswith(' '))
        if fields.get('Status') == 'install ok installed':
            installed.add(fields.get('Package'))
    return [p for p in bindep_packages(ROOT_PROFILE) if p not in installed]


def install_in_root(root, packages):
    """apt-get install ``packages`` in the root, no service started."""
    rc_d = root / 'usr' / 'sbin' / 'policy-rc.d'
    rc_d.write_text('#!/bin/sh\nexit 101\n')
    rc_d.chmod(0o755)
    try:
        log('installing in the root: ' + ' '.join(packages))
        in_root(root, 'apt-get', 'install', '-y', '-q',
                '--no-install-recommends', *packages)
    finally:
        rc_d.unlink()
    in_root(root, 'apt-get', 'clean')


def build_root_venv(root):
    """The test venv inside the root, from the project's requirements."""
    t0 = time.monotonic()
    req = root / 'tmp' / 'nova-vdpa-requirements'
    req.mkdir(parents=True, exist_ok=True)
    args = []
    for name in ROOT_REQUIREMENTS:
        shutil.copy(REPO / name, req / name)
        args += ['-r', f'/tmp/{req.name}/{name}']
    shutil.copy('/etc/resolv.conf', root / 'etc' / 'resolv.conf')
    # pip in the root trusts what pip on the host trusts (a host behind a
    # TLS-inspecting proxy has that proxy's CA in its bundle only).
    # Every variable that names a bundle names that copy: requests
    # prefers REQUESTS_CA_BUNDLE over pip's own --cert.
    env = {}
    for bundle in (os.environ.get('PIP_CERT'),
                   os.environ.get('SSL_CERT_FILE'),
                   '/etc/ssl/certs/ca-certificates.crt'):
        if bundle and os.path.isfile(bundle):
            shutil.copy(bundle, req / 'ca.crt')
            for var in ('PIP_CERT', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE',
                        'SSL_CERT_FILE'):
                env[var] = f'/tmp/{req.name}/ca.crt'
            break
    shutil.rmtree(root / ROOT_VENV.lstrip('/'), ignore_errors=True)
    in_root(root, 'python3', '-m', 'venv', ROOT_VENV)
    in_root(root, f'{ROOT_VENV}/bin/pip', 'install', '--quiet',
            '--no-cache-dir', *args, *ROOT_EXTRA_PIP, env=env)
    shutil.rmtree(req)
    log(f'test venv built in the root in {time.monotonic() - t0:.0f} s')


def link_modules(info, root):
    """Give the root the cached kernel's module tree (hard links).

    With its own root, the guest's modprobe reads the root's
    /lib/modules; the tree (out-of-tree modules and depmod output
    included) is the kernel cache's own.
    """
    release = info['kernelrelease']
    target = root / 'usr' / 'lib' / 'modules' / release
    if target.exists():
        return
    source = pathlib.Path(info['vmlinuz']).parents[1] / 'lib' / 'modules'
    tmp = target.with_name(f'.{release}.tmp')
    shutil.rmtree(tmp, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    sh(['cp', '-al', str(source / release), str(tmp)])
    os.rename(tmp, target)


def vng_argv(info, rundir, guest, memory, cpus):
    """The vng command line that boots ``info``'s kernel and runs ``guest``.

    The kernel console goes to ``rundir``/console.log; under TCG all vCPUs
    share one QEMU thread (see TCG_OPTS). With a root of its own
    (``info['root']``) the guest sees the checkout at ROOT_REPO and
    ``rundir`` at ROOT_RUN; else the host's root with both at their paths.
    """
    qemu_opts = (f'-chardev file,id=nvconsole,path={rundir / CONSOLE_LOG} '
                 '-device virtio-serial-pci,id=nvconsolebus '
                 '-device virtconsole,chardev=nvconsole,bus=nvconsolebus.0')
    accel = []
    if not info['kvm']:
        accel = ['--disable-kvm']
        qemu_opts += ' ' + TCG_OPTS
    if info.get('root'):
        dirs = ['--root', info['root'], f'--rodir={ROOT_REPO}={REPO}',
                f'--rwdir={ROOT_RUN}={rundir}',
                # vng takes the host path of a folder in the root: "/".
                '--cwd', info['root']]
    else:
        dirs = ['--rwdir', str(rundir)]
    return [str(vng_path()), *accel, '--run', info['vmlinuz'], '-m', memory,
            '-p', str(cpus), *dirs, '--append', BOOT_APPEND,
            '--exec', shlex.join(guest),
            # "=": the value starts with a dash.
            f'--qemu-opts={qemu_opts}']


#: folders virtme-ng's init covers with an empty tmpfs in a guest that
#: shares the host's root: a checkout under one is invisible there
GUEST_TMPFS = ('/var/log', '/var/tmp', '/var/cache', '/var/spool/rsyslog',
               '/var/lib/portables', '/var/lib/machines', '/var/lib/private',
               '/dev/shm')


def check_visible(info, repo=REPO):
    """Refuse a checkout the guest would not see (host's root only).

    :raises: BedError naming the folder.
    """
    if info.get('root'):
        return  # the checkout is mounted at ROOT_REPO
    path = pathlib.PurePosixPath(os.path.realpath(repo))
    for masked in GUEST_TMPFS:
        if path.is_relative_to(masked):
            raise BedError(
                f'the checkout {path} is under {masked}, which the bed\'s '
                'guest covers with an empty tmpfs (virtme-ng), so the tests '
                'could not be found there: clone the repository elsewhere')


def guest_paths(info, rundir):
    """(checkout, run folder) as the guest sees them."""
    if info.get('root'):
        return pathlib.PurePosixPath(ROOT_REPO), pathlib.PurePosixPath(
            ROOT_RUN)
    return REPO, rundir


def boot(command, services=(), timeout=3000, memory='3G', cpus=2,
         userspace=DEFAULT_USERSPACE):
    """Boot the bed, run ``command`` (argv) as root inside, return status.

    ``command`` may be a function of the guest's (checkout, run folder)
    paths returning the argv. Raises BedError when the VM does not boot or
    does not report a status; the guest's own exit status is returned
    otherwise.
    """
    info = prepare(userspace)
    check_visible(info)
    # One folder per run, so that several beds may run side by side.
    RUN_DIR.mkdir(exist_ok=True)
    rundir = pathlib.Path(tempfile.mkdtemp(
        prefix=time.strftime('run-%Y%m%d-%H%M%S-'), dir=RUN_DIR))
    # The traffic guest's iPXE (see IPXE_SUITE), where both userspaces see
    # it: the cache is not visible in a root of its own.
    shutil.copy(info['ipxe'], rundir / IPXE_GUEST_NAME)
    repo, run = guest_paths(info, rundir)
    if callable(command):
        command = command(repo, run)
    guest = [str(repo / 'tools' / 'testbed-guest.sh'),
             '--results', str(run), '--modules', ','.join(GUEST_MODULES),
             '--services', ','.join(services), '--', *command]
    argv = vng_argv(info, rundir, guest, memory, cpus)
    log(f'booting {info["kernelrelease"]} ({userspace}) under '
        f'{"KVM" if info["kvm"] else "TCG"}: {shlex.join(command)}')
    t0 = time.monotonic()
    sys.stdout.flush()
    sys.stderr.flush()
    # QEMU reopens /proc/self/fd/1 and /proc/self/fd/2 (vng's guest output
    # ports), which truncates them when they are files: `testbed.py run ..
    # >> log` lost what was written before. vng gets pipes; we copy.
    proc = subprocess.Popen(argv, cwd=REPO, env=_vng_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    relays = [_relay(proc.stdout, sys.stdout), _relay(proc.stderr, sys.stderr)]
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise BedError(f'the guest command ran over {timeout} s and was '
                       'killed; logs are in ' + str(rundir / 'logs'))
    finally:
        for relay in relays:
            relay.join(5)
    status_file = rundir / 'status'
    if not status_file.exists():
        raise BedError(
            f'the VM did not run the command (vng exit status {rc} after '
            f'{time.monotonic() - t0:.0f} s); the end of its kernel '
            f'console ({rundir / CONSOLE_LOG}):\n'
            + console_tail(rundir / CONSOLE_LOG))
    status = int(status_file.read_text().strip())
    log(f'guest finished with status {status} after '
        f'{time.monotonic() - t0:.0f} s')
    return status, rundir


def _relay(pipe, stream):
    """Copy ``pipe`` to ``stream`` as data arrives, on a daemon thread."""
    def copy():
        out = stream.buffer
        with pipe:
            while data := os.read(pipe.fileno(), 65536):
                out.write(data)
                out.flush()
    thread = threading.Thread(target=copy, daemon=True)
    thread.start()
    return thread


def console_tail(path, lines=60):
    try:
        text = path.read_text(errors='replace')
    except OSError as e:
        return f'(no console log: {e})'
    return '\n'.join(text.splitlines()[-lines:]) or '(empty)'


def discard(rundir):
    """Remove a run's folder; failed runs keep theirs for the logs."""
    shutil.rmtree(rundir, ignore_errors=True)


def cmd_run(args):
    if not args.command:
        raise BedError('nothing to run: testbed.py run -- COMMAND')
    status, rundir = boot(args.command, services=_services(args.services),
                          timeout=args.timeout, userspace=args.userspace)
    if status == 0:
        discard(rundir)
    else:
        log(f'output and logs kept in {rundir}')
    return status


def test_python(requested=None):
    """The interpreter that runs the functional tests (in the guest too).

    It must have the test requirements (python-subunit, stestr, nova):
    ``--python``, else this interpreter when it has them (tox runs us with
    the env's own), else the ``functional`` tox env of this checkout.
    """
    if requested:
        python = pathlib.Path(requested)
    elif importlib.util.find_spec('subunit') is not None:
        python = pathlib.Path(sys.executable)
    else:
        python = REPO / '.tox' / 'functional' / 'bin' / 'python'
    if not python.exists():
        raise BedError(f'{python} does not exist: the functional tests need '
                       'their tox environment; create it once with '
                       '`tools/dev.sh test -e functional` or name a Python '
                       'that has the test requirements with --python')
    proc = subprocess.run([str(python), '-c', 'import subunit, stestr'],
                          capture_output=True, text=True)
    if proc.returncode:
        raise BedError(f'{python} lacks the test requirements (subunit, '
                       'stestr): use the functional tox environment')
    return python


def results(python, *args):
    """Run tools/test_results.py with the test interpreter; its status."""
    script = REPO / 'tools' / 'test_results.py'
    return subprocess.run([str(python), str(script), *args],
                          cwd=REPO).returncode


def cmd_test(args):
    """Run functional tests inside the bed and load their results.

    The previous results are replaced only once this run has some: its
    own, or one failed test that says why there are none.
    """
    python = test_python(args.python)
    stream = RESULTS_DIR / f'{args.name}.subunit'
    # The host's test Python runs the tests on the host's own root; a
    # root of its own has its venv (see USERSPACES).
    guest_python = (python if args.userspace == DEFAULT_USERSPACE
                    else pathlib.PurePosixPath(ROOT_VENV) / 'bin' / 'python')

    patterns = args.pattern.split(',')
    if len(patterns) == 1:
        selection = (f'discover -t {{repo}} -s {{repo}}/{args.path} '
                     f'-p {shlex.quote(args.pattern)}')
    else:
        # Several globs: the modules they match, named (unittest's
        # discovery takes one pattern).
        package = '.'.join(pathlib.PurePosixPath(args.path).parts)
        modules = sorted({f.stem for g in patterns
                          for f in (REPO / args.path).glob(g)})
        if not modules:
            return bed_failure(python, args.name,
                               f'no test module in {args.path} matches '
                               f'{args.pattern}')
        selection = ' '.join(f'{package}.{m}' for m in modules)

    def inner(repo, run):
        return ['sh', '-c',
                f'cd {shlex.quote(str(repo))} && '
                f'exec {shlex.quote(str(guest_python))} -m subunit.run '
                + selection.format(repo=shlex.quote(str(repo)))
                + ' > "$NOVA_VDPA_TESTBED_RESULTS/functional.subunit"']
    try:
        status, rundir = boot(inner, services=_services(args.services),
                              timeout=args.timeout,
                              userspace=args.userspace)
    except BedError as e:
        # Never a silent skip: a bed that does not boot fails the run, and
        # the results say so.
        return bed_failure(python, args.name,
                           f'the functional tests could not run: {e}')
    produced = rundir / 'functional.subunit'
    if not produced.exists() or produced.stat().st_size == 0:
        return bed_failure(python, args.name,
                           'the guest produced no test results '
                           f'(status {status}); logs in {rundir / "logs"}')
    RESULTS_DIR.mkdir(exist_ok=True)
    shutil.copy(produced, stream)
    repo_url = REPO / f'.stestr.{args.name}'
    repo_url.mkdir(exist_ok=True)
    load = subprocess.run(
        [str(python), '-m', 'stestr', '--repo-url', str(repo_url),
         'load', '--force-init', '--subunit-trace', str(stream)],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    # subunit-trace's per-test lines and totals; its summary is not the
    # line CI reads, test_results.py prints that one.
    sys.stdout.write(load.stdout)
    sys.stdout.flush()
    counted = results(python, 'show', '--env', args.name)
    rc = load.returncode or status or counted
    if rc:
        log(f'service logs kept in {rundir / "logs"}')
        return rc
    discard(rundir)
    return 0


def bed_failure(python, name, reason):
    """Record one failed test that carries ``reason``; return 2."""
    log(f'FAILED: {reason}')
    results(python, 'fail', '--env', name, '--reason', reason)
    return 2


def cmd_prepare(args):
    info = prepare(args.userspace)
    log(f'ready: kernel {info["kernelrelease"]} (Debian {info["version"]}) '
        f'under {"KVM" if info["kvm"] else "TCG"}')
    return 0


def cmd_packages(args):
    if args.install:
        ensure_packages(args.profile)
    else:
        for pkg in missing_packages(bindep_packages(args.profile)):
            print(pkg)
    return 0


def cmd_info(args):
    root = root_dir() / 'ready.json'
    print(json.dumps({'cache': str(CACHE), 'kernels': cached_kernels(),
                      'roots': {ROOT_SUITE: json.loads(root.read_text())
                                if root.exists() else None},
                      'bed_packages': bindep_packages(BED_PROFILE),
                      'guest_modules': GUEST_MODULES}, indent=1))
    return 0


def _services(text):
    names = [s for s in (text or '').split(',') if s]
    unknown = set(names) - {'libvirt', 'ovs'}
    if unknown:
        raise BedError(f'unknown service(s) {", ".join(sorted(unknown))}; '
                       'known: libvirt, ovs')
    return names


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--userspace', choices=USERSPACES, default=DEFAULT_USERSPACE,
        help='what runs above the kernel: bookworm, the host itself '
        '(default), or trixie, a cached Debian 13 root')
    sub = parser.add_subparsers(dest='cmd', required=True)
    sub.add_parser('prepare').set_defaults(func=cmd_prepare)
    sub.add_parser('info').set_defaults(func=cmd_info)
    p = sub.add_parser('packages',
                       help='list (or --install) the Debian packages of '
                       'bindep.txt that are missing')
    p.add_argument('profile', nargs='?', default=None,
                   help='bindep profile; none: the lines without one')
    p.add_argument('--install', action='store_true')
    p.set_defaults(func=cmd_packages)
    # The functional tests need both services; a plain command none.
    for name, func, services in (('run', cmd_run, ''),
                                 ('test', cmd_test, 'libvirt,ovs')):
        p = sub.add_parser(name)
        p.add_argument('--services', default=services,
                       help='comma-separated: libvirt, ovs (default: '
                       f'{services or "none"})')
        p.add_argument('--timeout', type=int, default=3000,
                       help='seconds before the VM is killed')
        p.set_defaults(func=func)
    sub.choices['run'].add_argument('command', nargs=argparse.REMAINDER)
    sub.choices['test'].add_argument('path', nargs='?',
                                     default='tests/functional')
    sub.choices['test'].add_argument(
        '--pattern', default='test*.py',
        help='test file name pattern, e.g. test_netlink*.py, or several '
        'separated by commas')
    sub.choices['test'].add_argument(
        '--python', help='Python with the test requirements (default: '
        'this one if it has them, else .tox/functional/bin/python)')
    sub.choices['test'].add_argument(
        '--name', default='functional',
        help='results go to .test-results/NAME.subunit and .stestr.NAME')
    args = parser.parse_args(argv)
    if getattr(args, 'command', None) and args.command[0] == '--':
        args.command = args.command[1:]
    try:
        return args.func(args)
    except BedError as e:
        log(f'ERROR: {e}')
        return 2


if __name__ == '__main__':
    sys.exit(main())
