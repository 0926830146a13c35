"""smtp(8) connection reuse through scache(8): with
smtp_connection_cache_destinations naming the destination and one delivery at a time,
the second message goes over the first message's connection (an RSET probe, no
greeting or EHLO, `conn_use=2` in the log). pyfix's smtp beside Debian's, Debian's
qmgr and scache on both sides, the scripted server's transcripts and the smtp log
lines compared.
"""

import pytest

from qmgr_rig import rig_available
from test_smtp_client import both_script

pytestmark = pytest.mark.skipif(not rig_available(),
                                reason="needs root, Debian's Postfix daemons and smtp-sink")

CACHED = """\
smtp_connection_cache_destinations = 127.0.0.1
smtp_destination_concurrency_limit = 1
"""


def two_messages(rig):
    first = rig.submit(rcpts=("bob@example.org",))
    rig.wait_log(r"%s: removed" % first)
    second = rig.submit(rcpts=("carol@example.org",))
    rig.wait_log(r"%s: removed" % second)
    return [first, second]


def test_second_message_reuses_the_connection_like_postfix():
    ours, theirs = both_script(two_messages, main_cf_extra=CACHED)
    assert ours == theirs
    assert any("to=<carol@example.org>" in line and "conn_use=2" in line
               for line in ours[0])
    session = ours[1][0].splitlines()
    assert session.count("RSET") == 1 and session[0].startswith("EHLO ")
    assert len(ours[1]) == 1
