# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""The privsep channel's watch, against a real oslo.privsep daemon.

Not nova-vdpa's context (unit tests never start its daemon): a context of
this module's own, with no capabilities, whose daemon oslo.privsep forks
from the test process (``Method.FORK``, no root, no helper). Its
entrypoints return the daemon's pid, so the tests can SIGKILL it as the
OOM killer would. The same kills of nova-vdpa's real daemon, in the bed:
tests/functional/test_privsep_daemon_killed.py.
"""

import os
import signal
import threading
import time

import fixtures
from oslo_privsep import comm
from oslo_privsep import priv_context

from nova_vdpa import exception
from nova_vdpa.privsep import channel
from tests.unit import base

ctx = priv_context.PrivContext(
    __name__, cfg_section='nova_vdpa_test_privsep_channel',
    pypath=__name__ + '.ctx', capabilities=[])

#: long enough never to end a call in these tests: a call that is not
#: failed at once would hang until the test's own timeout
NEVER = 3600


@ctx.entrypoint_with_timeout(NEVER)
def _pid():
    return os.getpid()


@ctx.entrypoint_with_timeout(NEVER)
def _mark_then_sleep(marker):
    with open(marker, 'w') as f:
        f.write('started')
    time.sleep(NEVER)


@ctx.entrypoint_with_timeout(3)
def _pid_short_timeout():
    return os.getpid()


def _reap(pid):
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


class ChannelTestCase(base.TestCase):

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        ctx.start(priv_context.Method.FORK)
        self.addCleanup(self._stop)
        self.pids = [self.call(_pid)]

    def _stop(self):
        if ctx.channel is not None:
            try:
                ctx.stop()
            except OSError:
                ctx.channel = None
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _reap(pid)

    def call(self, fn, *args):
        return channel.call(ctx, fn, *args, action='test', device='dev0')

    def kill(self, pid, sig=signal.SIGKILL):
        os.kill(pid, sig)
        if sig == signal.SIGKILL:
            _reap(pid)

    def in_thread(self, fn, *args):
        """Run ``fn`` on a thread; its result or exception lands in box."""
        box = []

        def run():
            try:
                box.append(fn(*args))
            except BaseException as e:
                box.append(e)
        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread, box

    def wait_sent(self):
        """Until a call's request is in the socket, the reply not back."""
        for _ in range(600):
            with ctx.channel.lock:
                if ctx.channel.outstanding_msgs:
                    return
            time.sleep(0.05)
        self.fail('no call was sent')


class TestDaemonKilled(ChannelTestCase):

    def test_killed_in_a_call_fails_it_typed_then_a_new_daemon_serves(self):
        marker = os.path.join(self.tmp, 'started')
        thread, box = self.in_thread(self.call, _mark_then_sleep, marker)
        for _ in range(600):
            if os.path.exists(marker):
                break
            time.sleep(0.05)
        self.assertTrue(os.path.exists(marker))
        self.kill(self.pids[0])
        thread.join(120)
        self.assertFalse(thread.is_alive())
        (error,) = box
        self.assertIsInstance(error, exception.VdpaPrivsepDied)
        self.assertIn('dev0', str(error))
        self.assertIn('the reply never came', str(error))
        pid = self.call(_pid)
        self.pids.append(pid)
        self.assertNotEqual(self.pids[0], pid)

    def test_killed_with_a_request_unread_fails_it_at_once(self):
        # Stopped, the daemon does not read the request; killed, it
        # leaves it unread and the kernel resets our side of the socket.
        reader = ctx.channel.reader_thread
        passed_on = []
        self.useFixture(fixtures.MonkeyPatch(
            'nova_vdpa.privsep.channel._previous_excepthook',
            passed_on.append))
        self.kill(self.pids[0], signal.SIGSTOP)
        thread, box = self.in_thread(self.call, _pid)
        self.wait_sent()
        self.kill(self.pids[0])
        thread.join(120)
        self.assertFalse(thread.is_alive())
        (error,) = box
        self.assertIsInstance(error, exception.VdpaPrivsepDied)
        # The reader died of the reset; its traceback was not printed.
        self.assertFalse(reader.is_alive())
        self.assertIs(threading.excepthook, channel._excepthook)
        self.assertEqual([], passed_on)
        pid = self.call(_pid)
        self.pids.append(pid)
        self.assertNotEqual(self.pids[0], pid)

    def test_killed_between_calls_the_next_call_is_served(self):
        self.kill(self.pids[0])
        pid = self.call(_pid)
        self.pids.append(pid)
        self.assertNotEqual(self.pids[0], pid)
        self.assertEqual(pid, self.call(_pid))

    def test_several_calls_in_flight_all_fail(self):
        marker = os.path.join(self.tmp, 'started')
        threads = [self.in_thread(self.call, _mark_then_sleep, marker)
                   for _ in range(3)]
        for _ in range(600):
            with ctx.channel.lock:
                if len(ctx.channel.outstanding_msgs) == 3:
                    break
            time.sleep(0.05)
        self.kill(self.pids[0])
        for thread, box in threads:
            thread.join(120)
            self.assertFalse(thread.is_alive())
            self.assertIsInstance(box[0], exception.VdpaPrivsepDied)


class TestExceptHook(base.TestCase):

    def test_other_threads_go_to_the_previous_hook(self):
        passed_on = []
        self.useFixture(fixtures.MonkeyPatch(
            'nova_vdpa.privsep.channel._previous_excepthook',
            passed_on.append))
        thread = threading.Thread(target=lambda: None)
        for exc in (ConnectionResetError(104, 'reset'), ValueError('x')):
            channel._excepthook(threading.ExceptHookArgs(
                (type(exc), exc, None, thread)))
        self.assertEqual(2, len(passed_on))


class TestOsloPrivsepAlone(ChannelTestCase):
    """What the watch fixes: oslo.privsep 3.12.0 on its own.

    The channel here was started directly and never seen by
    :func:`channel.call`, so it has no watchdog.
    """

    def call(self, fn, *args):
        return fn(*args)

    def test_a_request_left_unread_waits_its_timeout_then_wedges(self):
        # The reader thread's death goes to threading.excepthook (a
        # traceback on stderr by default): record it instead.
        died = []
        self.useFixture(fixtures.MonkeyPatch(
            'threading.excepthook', lambda args: died.append(args)))
        self.kill(self.pids[0], signal.SIGSTOP)
        thread, box = self.in_thread(_pid_short_timeout)
        self.wait_sent()
        self.kill(self.pids[0])
        thread.join(120)
        # The reader thread died on ECONNRESET: the call waited out its
        # timeout, the channel still counts as running ...
        self.assertIsInstance(box[0], comm.PrivsepTimeout)
        self.assertTrue(ctx.channel.running)
        self.assertFalse(ctx.channel.reader_thread.is_alive())
        self.assertEqual([ConnectionResetError],
                         [type(a.exc_value) for a in died])
        # ... so it is never replaced, and every later call fails.
        self.assertRaises(BrokenPipeError, _pid)
        self.assertRaises(BrokenPipeError, _pid)
        # Through channel.call, the next call starts a new daemon.
        pid = channel.call(ctx, _pid, action='test', device='dev0')
        self.pids.append(pid)
        self.assertNotEqual(self.pids[0], pid)


class TestPrivateNames(base.TestCase):

    def test_every_name_is_there_in_this_release(self):
        ctx.start(priv_context.Method.FORK)
        pids = []

        def stop():
            ctx.stop()
            for pid in pids:
                _reap(pid)
        self.addCleanup(stop)
        pids.append(channel.call(ctx, _pid, action='test', device='dev0'))
        channel.check(ctx, ctx.channel)

    def test_a_missing_name_is_named(self):
        self.useFixture(fixtures.MonkeyPatch(
            'nova_vdpa.privsep.channel.PRIVATE_NAMES',
            channel.PRIVATE_NAMES + (channel.PrivateName(
                comm.ClientChannel, '_gone_in_this_release', 'test'),)))
        e = self.assertRaises(exception.PrivsepIncompatible, channel.check)
        self.assertIn('ClientChannel._gone_in_this_release', str(e))
        self.assertIn(channel.OSLO_PRIVSEP_RELEASE, str(e))
