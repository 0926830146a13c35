"""Who may submit or manage mail: Postfix's global/user_acl.c.

check_user_acl_byuid() matches the login name of a uid (or `unknown` when the uid has
no passwd entry, so that `!unknown` can refuse such accounts) against a string list
such as authorized_submit_users or authorized_flush_users.
"""

import pwd

from pyfix.maps.match_list import MATCH_FLAG_NONE, string_list


def check_user_acl_byuid(param, acl, uid):
    """None when uid may proceed, else the user name that was refused."""
    # Postfix only looks at the "static:" prefix, not the value: any static ACL permits.
    if acl.startswith("static:"):
        return None
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = "unknown"
    if string_list(param, acl, MATCH_FLAG_NONE).match(name):
        return None
    return name
