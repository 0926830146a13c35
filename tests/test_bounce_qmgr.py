"""bounce(8) in the whole delivery path: the qmgr rig (tests/qmgr_rig.py: pyfix's master,
cleanup, qmgr, discard and error, Debian's smtp and smtp-sink) once with pyfix's bounce
as the bounce, defer and trace services and once with Debian's. qmgr and the agents
make the requests (APPEND with BOUNCE_FLAG_* flags, FLUSH, WARN, TRACE) as they do in
production; the log lines of the two runs, masked and sorted, must be the same."""

import pytest

from qmgr_rig import PYFIX_QMGR, SBIN, Rig, normalize, rig_available, services, wait_gone

pytestmark = pytest.mark.skipif(not rig_available(),
                                reason="needs root, Debian's Postfix daemons and smtp-sink")

FAST_RETRY = """\
minimal_backoff_time = 1s
maximal_backoff_time = 2s
queue_run_delay = 1s
"""


def run(bounce, scenario, main_cf_extra="", sink_options=()):
    rig = Rig(qmgr=PYFIX_QMGR, main_cf_extra=main_cf_extra)
    try:
        master_cf = services(PYFIX_QMGR, "pyfix")
        if bounce == "pyfix":
            master_cf = master_cf.replace(SBIN + "/bounce\n", "bounce\n")
        rig.master.write_master_cf(master_cf)
        if sink_options is not None:
            rig.start_sink(sink_options)
        rig.start()
        queue_ids = scenario(rig)
        rig.quiet()
        lines = [line for line in rig.log().splitlines()
                 if "daemon started" not in line and "postlogd" not in line]
        return sorted(normalize(lines, queue_ids)), rig.sink.messages() if rig.sink else []
    finally:
        rig.cleanup()


def both(scenario, main_cf_extra="", sink_options=()):
    return (run("pyfix", scenario, main_cf_extra, sink_options),
            run("postfix", scenario, main_cf_extra, sink_options))


def test_error_transport_bounce_like_postfix():
    """An error-transport recipient: bounced, the DSN goes to the sender via the sink."""
    def scenario(rig):
        queue_id = rig.submit(rcpts=("bob@example.org", "y@error.example"))
        rig.wait_log(r"sender non-delivery notification")
        rig.wait_log(r"status=sent .*\n(.*\n)*.*removed\n(.*\n)*.*removed")
        assert wait_gone(rig, queue_id)
        return [queue_id]

    (ours, our_sink), (theirs, their_sink) = both(scenario)
    assert ours == theirs
    assert any("sender non-delivery notification: ID" in line for line in ours)
    assert len(our_sink) == len(their_sink) == 2
    assert "Undelivered Mail Returned to Sender" in "".join(our_sink)


def test_expiry_returns_to_sender_like_postfix():
    """maximal_queue_lifetime = 0: the defer log becomes the non-delivery report."""
    def scenario(rig):
        queue_id = rig.submit(sender="alice@discard.example")
        rig.wait_log(r"status=expired, returned to sender")
        rig.wait_log(r"to=<alice@discard.example>.*status=sent")
        assert wait_gone(rig, queue_id)
        return [queue_id]

    extra = "maximal_queue_lifetime = 0\nbounce_queue_lifetime = 0\n"
    (ours, _), (theirs, _) = both(scenario, extra, sink_options=("-r", "RCPT"))
    assert ours == theirs
    assert any("sender non-delivery notification" in line for line in ours)


def test_delay_warning_like_postfix():
    """delay_warning_time: one delay notification from the defer log."""
    def scenario(rig):
        queue_id = rig.submit(sender="alice@discard.example")
        rig.wait_log(r"sender delay notification", timeout=30)
        rig.wait_log(r"to=<alice@discard.example>.*status=sent", timeout=30)
        return [queue_id]

    extra = FAST_RETRY + "delay_warning_time = 1s\n"
    (ours, _), (theirs, _) = both(scenario, extra, sink_options=("-r", "RCPT"))
    # The number of retries before the warning depends on timing; the warning itself,
    # and its delivery, must be alike.
    pick = [line for line in ours if "notification" in line or "discard.example>" in line]
    their_pick = [line for line in theirs if "notification" in line
                  or "discard.example>" in line]
    assert sorted(set(pick)) == sorted(set(their_pick))
    assert any("sender delay notification: ID" in line for line in pick)


def test_bounce_of_bounce_goes_to_2bounce_like_postfix():
    """A bounce (null sender) that expires: the postmaster gets the double bounce."""
    def scenario(rig):
        bounce = rig.submit(sender="")
        rig.wait_log(r"postmaster non-delivery notification")
        rig.wait_log(r"to=<pm@discard.example>.*status=sent")
        assert wait_gone(rig, bounce)
        return [bounce]

    extra = ("bounce_queue_lifetime = 0\n2bounce_notice_recipient = pm@discard.example\n"
             "notify_classes = 2bounce\n")
    (ours, _), (theirs, _) = both(scenario, extra, sink_options=("-r", "RCPT"))
    assert ours == theirs
